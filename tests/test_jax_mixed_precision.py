"""Mixed precision training on Keras' JAX backend: a few steps per policy without NaN.

Each run is a subprocess with KERAS_BACKEND=jax (tests.jax_train_worker); see
tests/test_mixed_precision.py for the TensorFlow twin (marked slow there).
"""
import json
import math

import numpy as np
import pytest

from mrcnn.config import LOSS_NAMES
from tests.multiprocess import Processes
from tests.test_jax_training import JAX, TIMEOUT, jax_worker, load


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_small_model_trains_without_nan_on_jax(tmp_path, policy):
    """Five steps of the small compact model (GroupNorm backbone) on BlobDataset under the
    policy: every loss finite, the weights finite float32 masters that moved; the heads
    compute in the policy's low precision. float16 trains through Keras'
    LossScaleOptimizer: dynamic loss scaling skips a step whose float16 gradients overflow
    and halves the scale (2 ** 15 at first; measured: the first three steps overflow, the
    scale ends at 4096 and the last two steps train); bfloat16 needs no scaling (float32's
    range)."""
    with Processes(str(tmp_path), timeout=TIMEOUT) as processes:
        processes.wait(processes.start(policy, jax_worker(
            tmp_path, policy, "--dtype-policy", policy, "--steps", "5", "--lr", "0.01",
            "--save-initial"), env=JAX))
    with open(tmp_path / f"report_{policy}.json") as f:
        report = json.load(f)
    expected = "LossScaleOptimizer" if policy == "mixed_float16" else "MomentumSGD"
    assert report["optimizer"] == expected
    assert report["mask_compute_dtype"] == policy.split("_")[1]
    assert report["weight_dtypes"] == ["float32"]
    if policy == "mixed_float16":
        scale = report["loss_scale"]
        assert 1.0 <= scale < 2.0 ** 15 and math.log2(scale).is_integer(), scale
    else:
        assert report["loss_scale"] is None
    for name in ("loss",) + LOSS_NAMES:
        (value,) = report["history"][name]
        assert math.isfinite(value), (name, report["history"])
    before = load(tmp_path / f"initial_{policy}.npz")
    after = load(tmp_path / f"weights_{policy}.npz")
    assert all(np.all(np.isfinite(w)) for w in after.values())
    moved = max(float(np.max(np.abs(after[k] - before[k]))) for k in after if after[k].size)
    assert moved > 1e-4, moved
