"""Keras' JAX backend without TensorFlow (issue 23, point 3): mrcnn imports, trains, detects,
evaluates and runs ``mrcnn detect`` in a process where ``import tensorflow`` fails, and the
TensorFlow-only features say which backend they need.

Each check runs in a subprocess whose PYTHONPATH starts with tests/no_tensorflow, whose
sitecustomize.py makes every ``tensorflow*`` import raise ModuleNotFoundError before anything
else is imported, and logs who asked (MRCNN_TF_BLOCK_LOG).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
BLOCKER = os.path.join(ROOT, "tests", "no_tensorflow")
# The one TensorFlow probe allowed on these paths: train() asks whether TensorFlow is there
# for Keras' TensorBoard callback (importlib.util.find_spec), and goes on without it.
ALLOWED_ASKERS = {"tensorboard_available"}


def no_tensorflow_env(log_path):
    """The environment of a JAX-backend subprocess whose ``import tensorflow`` fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "PYTHONPATH")}
    env.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([BLOCKER, ROOT]), MRCNN_TF_BLOCK_LOG=str(log_path))
    return env


def askers(log_path):
    """{function that asked for a blocked module} from the blocker's log (innermost caller)."""
    if not os.path.exists(log_path):
        return set()
    with open(log_path, encoding="utf-8") as f:
        return {line.split("\t")[1].split(",")[0] for line in f if line.strip()}


def run(args, log_path, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=no_tensorflow_env(log_path),
                          capture_output=True, text=True, timeout=timeout)


def test_the_blocker_makes_import_tensorflow_fail(tmp_path):
    log = tmp_path / "block.log"
    done = run(["-c", "import tensorflow"], log, timeout=120)
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'tensorflow'" in done.stderr
    assert askers(log) == {"<module>"}


@pytest.fixture(scope="module")
def jax_paths(tmp_path_factory):
    """The JSON of tests/no_tensorflow/jax_paths.py run without TensorFlow, and its block log."""
    out = tmp_path_factory.mktemp("jax_paths")
    log = out / "block.log"
    done = run([os.path.join(BLOCKER, "jax_paths.py"), str(out)], log)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), log


def test_train_detect_and_evaluate_run_without_tensorflow(jax_paths):
    result, log = jax_paths
    assert result["backend"] == "jax"
    assert result["tensorflow_imported"] is False
    assert askers(log) == ALLOWED_ASKERS  # the blocker was on, and only the probe asked
    assert len(result["train_losses"]) == 1 and np.isfinite(result["train_losses"][0])
    assert result["train_losses"][0] > 0
    assert result["checkpoints"] == ["mask_rcnn_tiny_0001.h5"]
    assert result["detect_keys"] == ["class_ids", "masks", "rois", "scores"]
    assert result["detect_masks_shape"][:2] == [128, 128]
    assert result["evaluation"]["images"] == 2
    assert 0.0 <= result["evaluation"]["mAP50"] <= 1.0


@pytest.mark.parametrize("feature", ["MaskRCNN.export", "mrcnn.export.export_model",
                                     "Predictor", "train_tf_data", "TF_CONFIG"])
def test_tensorflow_only_features_name_the_backend_they_need(jax_paths, feature):
    error = jax_paths[0]["errors"][feature]
    assert error is not None, f"{feature} ran on JAX"
    assert error["type"] == "BackendError"
    assert "tensorflow Keras backend" in error["message"]
    if feature != "train_tf_data":
        assert "'jax'" in error["message"]


def test_mrcnn_detect_cli_runs_without_tensorflow(tmp_path):
    import skimage.io
    image = (np.random.default_rng(0).random((96, 120, 3)) * 255).astype(np.uint8)
    skimage.io.imsave(tmp_path / "picture.png", image)
    log = tmp_path / "block.log"
    done = run(["-m", "mrcnn", "detect", "--weights", "random", "--tiny", "--num-classes", "4",
                "--logs", str(tmp_path / "logs"), str(tmp_path / "picture.png"),
                "--out", str(tmp_path / "out")], log)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 images" in done.stdout and "0 skipped" in done.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["images.json", "picture.png", "results.json"]
    with open(tmp_path / "out" / "images.json", encoding="utf-8") as f:
        images = json.load(f)["images"]
    assert [(i["height"], i["width"]) for i in images] == [(96, 120)]
    assert askers(log) == set()


def test_mrcnn_export_cli_on_jax_says_it_needs_tensorflow(tmp_path):
    log = tmp_path / "block.log"
    done = run(["-m", "mrcnn", "export", "--weights", "random", "--tiny", "--num-classes", "4",
                "--out", str(tmp_path / "saved")], log, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith("error: export to 'tf_saved_model'")
    assert "needs the tensorflow Keras backend" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "saved").exists()
    assert askers(log) == set()


def _setup_requirements():
    """(install_requires, extras_require) of setup.py, read without running it."""
    import ast
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    keywords = {k.arg: k.value for k in call.keywords}
    return (ast.literal_eval(keywords["install_requires"]),
            ast.literal_eval(keywords["extras_require"]))


def test_requirements_jax_is_install_requires_without_tensorflow_plus_jax():
    install_requires, extras = _setup_requirements()
    with open(os.path.join(ROOT, "requirements-jax.txt"), encoding="utf-8") as f:
        listed = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    without_tf = [r for r in install_requires
                  if not r.startswith(("tensorflow", "tensorboard"))]
    assert listed == without_tf + extras["jax"]
    assert any(r.startswith("tensorflow") for r in install_requires)  # TF stays the default
    assert extras["jax"] == ["jax[cpu]>=0.10"]
