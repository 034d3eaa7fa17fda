"""mrcnn.cli_args: the command-line plumbing the samples (and the mrcnn command) share."""
import argparse
import ast
import os

import pytest

from mrcnn import cli_args
from mrcnn.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Config(Config):
    NAME = "clitest"
    NUM_CLASSES = 2
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


def _parse(argv, **kwargs):
    parser = argparse.ArgumentParser()
    cli_args.add_common_arguments(parser, **kwargs)
    return parser.parse_args(argv)


# Every sample script. notebook_utils.py is not one: it is the notebooks' helper, and the
# notebooks may use the shapes sample's own config and dataset.
NOT_SCRIPTS = {"__init__.py", "notebook_utils.py"}
SAMPLE_SCRIPTS = sorted(f for f in os.listdir(os.path.join(ROOT, "samples"))
                        if f.endswith(".py") and f not in NOT_SCRIPTS)


def test_sample_scripts_are_all_checked():
    # The list is read from the folder; make sure it did not come back empty or partial.
    assert {"balloon.py", "coco.py", "keypoints.py", "nucleus.py", "shapes.py"} <= set(SAMPLE_SCRIPTS)


@pytest.mark.parametrize("sample", SAMPLE_SCRIPTS)
def test_samples_import_only_mrcnn(sample):
    # What two samples share lives in the package: no sample imports another (lazy imports too).
    tree = ast.parse(open(os.path.join(ROOT, "samples", sample), encoding="utf-8").read())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    assert not [m for m in modules if m and m.split(".")[0] == "samples"]


def test_overrides_of_the_small_run_flags():
    args = _parse(["--weights", "random", "--tiny", "--image-size", "192", "--steps", "25",
                   "--backbone", "resnet101"], weights_flag="--weights", weights_dest="weights")
    attrs = cli_args.config_overrides(args)
    assert attrs["IMAGE_MIN_DIM"] == attrs["IMAGE_MAX_DIM"] == 192
    assert attrs["BACKBONE"] == "resnet101"
    assert (attrs["STEPS_PER_EPOCH"], attrs["VALIDATION_STEPS"]) == (25, 2)
    assert attrs["POST_NMS_ROIS_INFERENCE"] == cli_args.TINY_OVERRIDES["POST_NMS_ROIS_INFERENCE"]
    assert cli_args.config_overrides(_parse(["--model", "coco"])) == {}


@pytest.mark.parametrize("argv, message", [
    (["--image-size", "100"], "--image-size must be a positive multiple of 64, got 100"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
])
def test_bad_small_run_flags(argv, message):
    with pytest.raises(cli_args.CliError, match=message):
        cli_args.config_overrides(_parse(["--model", "random"] + argv))


def test_make_config_turns_config_errors_into_usage_errors():
    config = cli_args.make_config(_Config, IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128)
    assert isinstance(config, _Config) and config.IMAGE_SHAPE[0] == 128
    with pytest.raises(cli_args.CliError, match="invalid configuration: .*IMAGE_MAX_DIM"):
        cli_args.make_config(_Config, IMAGE_MAX_DIM=100)


def test_resolve_weights_names_the_flag_and_the_file(tmp_path):
    config = _Config()
    assert cli_args.resolve_weights("random", config) is None
    path = tmp_path / "w.h5"
    path.write_bytes(b"")
    assert cli_args.resolve_weights(str(path), config) == str(path)
    with pytest.raises(cli_args.CliError, match="weights file not found: '/no/w.h5'"):
        cli_args.resolve_weights("/no/w.h5", config)


def test_run_main_exit_status(capsys):
    def fail(args):
        raise cli_args.CliError("bad value 7")
    assert cli_args.run_main(fail, None) == 2
    assert capsys.readouterr().err == "error: bad value 7\n"
    assert cli_args.run_main(lambda args: None, None) == 0


# --------------------------------------------------------------------------- --weights last
def _run(logs, name, stamp, epoch, settings=None):
    """A fake run folder with one (empty) epoch checkpoint; returns the checkpoint's path."""
    from mrcnn.checkpoints import write_run_settings
    folder = logs / f"{name}{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mask_rcnn_{name}_{epoch:04d}.h5"
    path.write_bytes(b"")
    if settings is not None:
        write_run_settings(str(folder), settings)
    return str(path)


def test_last_prefers_a_real_run_over_a_newer_tiny_one(tmp_path, caplog):
    real = _run(tmp_path, "balloon", "20260101T0000", 30)                     # no settings: full
    tiny = _run(tmp_path, "balloon", "20260102T0000", 1, {"tiny": True})
    args = _parse(["--weights", "last", "--logs", str(tmp_path)], weights_flag="--weights",
                  weights_dest="weights")
    with caplog.at_level("WARNING", logger="mrcnn.cli_args"):
        cli_args.remember_last(args, "balloon")
    assert args.weights == real and not args.tiny
    assert f"not the newer --tiny checkpoint(s) {tiny}; pass --tiny" in caplog.text

    args = _parse(["--weights", "last", "--tiny", "--logs", str(tmp_path)],
                  weights_flag="--weights", weights_dest="weights")
    cli_args.remember_last(args, "balloon")
    assert args.weights == tiny


def test_last_remembers_tiny_and_image_size(tmp_path, caplog):
    tiny = _run(tmp_path, "coco", "20260102T0000", 3, {"tiny": True, "image_size": 192})
    _run(tmp_path, "balloon", "20260103T0000", 9)                              # another NAME
    args = _parse(["--model", "last", "--logs", str(tmp_path)])
    with caplog.at_level("WARNING", logger="mrcnn.cli_args"):
        config = cli_args.make_run_config(type("C", (_Config,), {"NAME": "coco"}), args)
    assert args.model == tiny and args.tiny is True and args.image_size == 192
    assert config.IMAGE_MAX_DIM == 192
    assert config.POST_NMS_ROIS_INFERENCE == cli_args.TINY_OVERRIDES["POST_NMS_ROIS_INFERENCE"]
    assert "the only checkpoints in" in caplog.text and "from --tiny runs" in caplog.text


def test_last_with_flags_no_run_has(tmp_path):
    _run(tmp_path, "coco", "20260101T0000", 3)
    args = _parse(["--model", "last", "--tiny", "--logs", str(tmp_path)])
    with pytest.raises(cli_args.CliError,
                       match=r"--model last: no checkpoint mask_rcnn_coco_\*\.h5 trained with "
                             r"--tiny in the run folders coco\* of"):
        cli_args.remember_last(args, "coco")


def test_shapes_last_does_not_take_a_small_run_for_the_real_one(tmp_path, caplog):
    from samples import shapes
    real = _run(tmp_path, "shapes", "20260101T0000", 12, {"small": False, "epochs": 12})
    small = _run(tmp_path, "shapes", "20260102T0000", 1, {"small": True})
    with caplog.at_level("WARNING", logger="samples.shapes"):
        assert shapes.resolve_weights("last", str(tmp_path)) == real
    assert f"not the newer --small checkpoint(s) {small}" in caplog.text
    assert shapes.resolve_weights("last", str(tmp_path), small=True) == small


def test_keypoints_last_does_not_take_a_small_run_for_the_real_one(tmp_path, caplog):
    from samples import keypoints
    real = _run(tmp_path, "keypoints", "20260101T0000", 100, {"small": False, "epochs": 100})
    small = _run(tmp_path, "keypoints", "20260102T0000", 1, {"small": True})
    with caplog.at_level("WARNING", logger="mrcnn.cli_args"):
        assert keypoints.resolve_weights("last", str(tmp_path)) == real
    assert f"not the newer --small checkpoint(s) {small}; pass --small" in caplog.text
    assert keypoints.resolve_weights("last", str(tmp_path), small=True) == small
    assert keypoints.resolve_weights("last", str(tmp_path), small=False) == real


def test_sample_weights_only_small_runs_and_errors(tmp_path, caplog):
    small = _run(tmp_path, "keypoints", "20260102T0000", 1, {"small": True})
    with caplog.at_level("WARNING", logger="mrcnn.cli_args"):
        assert cli_args.sample_weights("last", str(tmp_path), "keypoints", "k.py") == small
    assert f"{small} is from a --small (toy) run, the only kind in" in caplog.text
    with pytest.raises(cli_args.CliError,
                       match=r"^--weights last: no trained keypoints checkpoint in '.*'; run "
                             r"'python k.py train' first \(or pass --logs DIR\)$"):
        cli_args.sample_weights("last", str(tmp_path), "keypoints", "k.py", small=False)
    with pytest.raises(cli_args.CliError, match=r"no trained --small shapes checkpoint in .*"
                                                r"'python s.py train --small' first"):
        cli_args.sample_weights("last", str(tmp_path), "shapes", "s.py", small=True)
    with pytest.raises(cli_args.CliError, match=r"^--weights: file not found: 'nope.h5'$"):
        cli_args.sample_weights("nope.h5", str(tmp_path), "shapes", "s.py")
    assert cli_args.sample_weights(small, str(tmp_path), "shapes", "s.py") == small


def test_sample_checks_and_last_epoch_checkpoint(tmp_path):
    cli_args.check_positive("--steps", None)
    cli_args.check_positive("--steps", 1)
    with pytest.raises(cli_args.CliError, match=r"^--steps must be a positive integer, got 0$"):
        cli_args.check_positive("--steps", 0)
    with pytest.raises(cli_args.CliError, match=r"^training wrote no checkpoint in '.*run'$"):
        cli_args.last_epoch_checkpoint(str(tmp_path / "run"))
    last = _run(tmp_path, "shapes", "20260101T0000", 3)
    _run(tmp_path, "shapes", "20260101T0000", 2)
    assert cli_args.last_epoch_checkpoint(os.path.dirname(last)) == last


def test_load_errors_do_not_talk_about_the_python_api():
    err = ValueError("'a.h5': the weights of 1 layer(s) differ in shape from the model: "
                     "mrcnn_bbox_fc: kernel (64, 8) vs (1024, 8). A different NUM_CLASSES (or "
                     "backbone) than the file's? Load the rest with load_weights(path, "
                     "by_name=True, exclude=['mrcnn_bbox_fc'])")
    assert cli_args._without_api_hints(err) == (
        "'a.h5': the weights of 1 layer(s) differ in shape from the model: mrcnn_bbox_fc: kernel "
        "(64, 8) vs (1024, 8). A different NUM_CLASSES (or backbone) than the file's?")
    err = ValueError("layer 'mrcnn_bbox_fc' weight 'kernel': shape (64, 8) in file 'a.h5' but "
                     "(1024, 8) in the model (different NUM_CLASSES or backbone? use by_name=True "
                     "with exclude=['mrcnn_bbox_fc', ...])")
    assert cli_args._without_api_hints(err) == ("layer 'mrcnn_bbox_fc' weight 'kernel': shape "
                                                "(64, 8) in file 'a.h5' but (1024, 8) in the model")


@pytest.mark.slow
def test_splash_last_rebuilds_the_tiny_network(tmp_path, capsys):
    """A --tiny checkpoint, then ``splash --weights last`` without --tiny: it loads and runs;
    a full-size network on the same file fails without by_name / exclude in the message."""
    import numpy as np
    import skimage.io

    from mrcnn.checkpoints import write_run_settings
    from mrcnn.model import MaskRCNN
    from samples import balloon

    config = cli_args.make_config(balloon.BalloonConfig, GPU_COUNT=1,
                                  **{**cli_args.TINY_OVERRIDES, "IMAGES_PER_GPU": 1})
    folder = tmp_path / "balloon20260101T0000"
    folder.mkdir()
    MaskRCNN("inference", config, str(tmp_path)).save_weights(
        str(folder / "mask_rcnn_balloon_0001.h5"))
    write_run_settings(str(folder), {"tiny": True})
    image = tmp_path / "photo.png"
    skimage.io.imsave(image, np.full((96, 128, 3), 120, np.uint8), check_contrast=False)
    argv = ["splash", "--weights", "last", "--logs", str(tmp_path), "--image", str(image),
            "--output", str(tmp_path / "out")]
    assert balloon.main(argv) == 0
    assert len(os.listdir(tmp_path / "out")) == 1

    weights = str(folder / "mask_rcnn_balloon_0001.h5")
    capsys.readouterr()
    status = balloon.main(["splash", "--weights", weights, "--image", str(image),
                           "--backbone", "resnet50", "--image-size", "128", "--logs", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "could not load weights" in err and "--tiny" in err
    assert "by_name" not in err and "exclude" not in err and "Traceback" not in err


def test_tensorflow_start_up_noise_is_kept_out():
    """A command's stderr holds no oneDNN / cuda / cuInit lines from TensorFlow's start."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT
    code = ("from mrcnn.cli_args import quiet_tensorflow\nquiet_tensorflow()\n"
            "import tensorflow as tf, sys\nprint(int(tf.constant(1) + 1))\n"
            "print('kept', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2\n"
    assert done.stderr == "kept\n"


@pytest.mark.parametrize("line, noise", [
    ("I0000 00:00:1795983530.545745   16558 port.cc:153] oneDNN custom operations are on.", True),
    ("E0000 00:00:1795983555.454166   16558 cuda_platform.cc:52] failed call to cuInit: ...", True),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("Traceback (most recent call last):", False),
    ("ImportError: libcudart.so.12: cannot open shared object file", False),
])
def test_start_up_noise_pattern(line, noise):
    assert bool(cli_args._TF_STARTUP_NOISE.match(line)) is noise


def test_run_sample_main_exit_codes_and_messages(capsys):
    parser = argparse.ArgumentParser(prog="toy.py")
    parser.add_argument("command")

    def usage(args):
        raise cli_args.CliError("--limit must be a positive integer, got -3")

    def interrupted(args):
        raise KeyboardInterrupt("the last intact checkpoint is x.h5")

    commands = {"ok": lambda args: 0, "usage": usage, "stop": interrupted}
    assert cli_args.run_sample_main("toy.py", parser, commands, ["ok"]) == 0
    assert cli_args.run_sample_main("toy.py", parser, commands, ["usage"]) == 2
    assert capsys.readouterr().err == "toy.py usage: error: --limit must be a positive integer, got -3\n"
    assert cli_args.run_sample_main("toy.py", parser, commands, ["stop"]) == 130
    assert capsys.readouterr().err == "toy.py stop: interrupted: the last intact checkpoint is x.h5\n"
    assert cli_args.run_sample_main("toy.py", parser, commands, []) == 2     # argparse: missing


def test_sample_training_model_steps_and_resume_errors(tmp_path):
    from mrcnn.compact import SmallCompactConfig

    class Toy(SmallCompactConfig):
        NAME = "toy"
        NUM_CLASSES = 2

    model = cli_args.sample_training_model(Toy, 3, str(tmp_path))
    assert (type(model.config).__name__, model.config.STEPS_PER_EPOCH, model.epoch) == ("TrainConfig", 3, 0)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(cli_args.CliError, match=r"^could not load weights '.*bad\.h5': "):
        cli_args.sample_training_model(Toy, 3, str(tmp_path), str(bad))
