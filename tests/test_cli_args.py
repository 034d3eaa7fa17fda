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


@pytest.mark.parametrize("sample", ["balloon.py", "nucleus.py", "coco.py", "shapes.py"])
def test_samples_import_only_mrcnn(sample):
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
