"""bench/device_check.sh, the GPU check, run here on the CPU with tiny sizes: the same script
and parts (bench/device_parts.py) the GPU machine runs, on Keras' JAX backend, with
TensorFlow and albumentations blocked (the GPU machine has neither; pycocotools travels
there as a wheel, bench/fetch_device_wheels.sh)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("jax")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
BLOCKER = os.path.join(ROOT, "tests", "no_tensorflow")
# float32 only: each setting is one more XLA compilation (20-40 s on 2 shared cores), and the
# suite must stay under 15 minutes. The parts' bfloat16 settings ran under the same script in
# a Python 3.12 / JAX 0.11.2 environment (bench/README.md).
PRECISIONS = ("float32",)


@pytest.fixture(scope="module")
def device_check(tmp_path_factory):
    """(the printed JSON, the written device_check.json, the output folder, the block log)."""
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout")
    out = tmp_path_factory.mktemp("device_check")
    log = out / "blocked.log"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "PYTHONPATH")}
    env.update(PYTHON=sys.executable, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=BLOCKER, MRCNN_TF_BLOCK_LOG=str(log),
               MRCNN_BLOCK_MODULES="albumentations,albucore",
               DEVICE_CHECK_TINY="1", DEVICE_CHECK_PRECISIONS=",".join(PRECISIONS),
               DEVICE_CHECK_DETECT_BATCHES="2", DEVICE_CHECK_TRAIN_BATCHES="1",
               DEVICE_CHECK_LIMITS="300,300,300,300")
    done = subprocess.run(["bash", os.path.join(ROOT, "bench", "device_check.sh"), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    printed = json.loads(done.stdout[done.stdout.index("{"):])
    with open(out / "device_check.json", encoding="utf-8") as f:
        written = json.load(f)
    return printed, written, out, log


def errors_in(value, path="result"):
    """Paths of every "error" key in a nested JSON value."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [path] if key == "error" else errors_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += errors_in(item, f"{path}[{i}]")
    return found


def test_every_part_ran_without_an_error(device_check):
    printed, written, out, _ = device_check
    assert printed == written
    assert errors_in(printed) == []
    assert printed["benchmark"] == "device_check" and printed["tiny"] is True
    assert printed["backend"] == "jax" and printed["keras"] and printed["jax"]
    assert printed["devices"] and all("cpu" in d.lower() for d in printed["devices"])
    assert sorted(os.listdir(out)) == ["blocked.log", "device_check.json", "device_check.log"]
    assert printed["wall_s"] > 0


@pytest.mark.parametrize("part, backbone", [("detect_resnet50", "resnet50"),
                                            ("detect_resnet101", "resnet101")])
def test_detect_parts_give_positive_ms_per_image_per_setting(device_check, part, backbone):
    result = device_check[0][part]
    assert sorted(result) == sorted([f"{p}_batch2" for p in PRECISIONS] + ["part_s"])
    for precision in PRECISIONS:
        setting = result[f"{precision}_batch2"]
        assert (setting["backbone"], setting["precision"], setting["batch"]) == \
            (backbone, precision, 2)
        assert 0 < setting["ms_per_image_min"] <= setting["ms_per_image"] <= \
            setting["ms_per_image_max"]
        assert setting["first_call_s"] > 0
        assert setting["detections"] == 20  # every slot: the bench's forced detections


def test_train_part_gives_positive_images_per_s_per_setting(device_check):
    result = device_check[0]["train_resnet50"]
    assert sorted(result) == sorted([f"{p}_batch1" for p in PRECISIONS] + ["part_s"])
    for precision in PRECISIONS:
        setting = result[f"{precision}_batch1"]
        assert setting["precision"] == precision and setting["layers"] == "all"
        assert setting["images_per_s"] > 0
        assert setting["images_per_s"] == pytest.approx(1 / setting["median_s_per_step"])


def test_shapes_part_reports_the_wall_time_to_its_target(device_check):
    shapes = device_check[0]["shapes"]
    assert shapes["finished"] is True and shapes["reached"] is True
    assert shapes["target_mAP50"] == 0.0  # the tiny run's target: reached at the first epoch
    assert shapes["epochs_run"] == 1 and len(shapes["history"]) == 1
    assert 0 < shapes["wall_s_to_target"] <= shapes["wall_s"]
    assert shapes["history"][0]["wall_s"] == pytest.approx(shapes["wall_s_to_target"], abs=0.01)
    assert shapes["train_s"] > 0 and shapes["eval_s"] > 0


def test_the_parts_need_no_tensorflow_or_albumentations(device_check):
    log = device_check[3]
    asked = set()
    if os.path.exists(log):
        with open(log, encoding="utf-8") as f:
            asked = {tuple(line.split("\t")[:2]) for line in f if line.strip()}
    # train() probes for TensorFlow (TensorBoard logs) and goes on without it.
    assert {name for name, _ in asked} <= {"tensorflow"}
    assert {who.split(",")[0] for _, who in asked} <= {"tensorboard_available"}


def test_a_part_that_fails_reads_error_and_the_others_still_run(tmp_path):
    """A part whose process dies (here: an unknown precision) reports an error for each of
    its settings; the summary is still written."""
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHON=sys.executable, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               DEVICE_CHECK_TINY="1", DEVICE_CHECK_PRECISIONS="float8",
               DEVICE_CHECK_LIMITS="60,60,60,1")
    done = subprocess.run(["bash", os.path.join(ROOT, "bench", "device_check.sh"),
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    for part in ("detect_resnet50", "detect_resnet101"):
        assert result[part]["float8_batch1"]["error"].startswith("the part exited with code 2")
        assert "precision must be one of" in result[part]["float8_batch1"]["stderr_tail"]
    assert "float8_batch2" in result["train_resnet50"]
    assert result["shapes"]["error"] == "the part exited with code 124 (over its 1 s limit)"
