"""Mixed precision on the training path: a few steps on shapes without NaN, per policy.

Marked slow (about 20 s each on 2 idle cores) to keep the default suite's budget for the
multi-process tests; run with ``-m slow``."""
import math

import keras
import numpy as np
import pytest

from mrcnn.config import LOSS_NAMES
from mrcnn.model import MaskRCNN


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_tiny_model_trains_without_nan(tmp_path, policy):
    from samples.shapes import SmallShapesConfig, make_dataset

    class MixedConfig(SmallShapesConfig):
        DTYPE_POLICY = policy
        STEPS_PER_EPOCH = 3
        VALIDATION_STEPS = 0

    keras.utils.set_random_seed(0)
    model = MaskRCNN("training", MixedConfig(), str(tmp_path))
    before = [w.copy() for w in model.keras_model.get_weights()]
    history = model.train(make_dataset(6, seed=2), None, learning_rate=0.01, epochs=1,
                          layers="all", verbose=0)
    optimizer = model.keras_model.optimizer
    # float16 needs loss scaling (Keras wraps the optimizer); bfloat16 has float32's range.
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    assert model.keras_model.get_layer("mrcnn_mask").compute_dtype == policy.split("_")[1]
    for name in ("loss",) + LOSS_NAMES:
        assert math.isfinite(history.history[name][0]), (name, history.history)
    after = model.keras_model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    assert all(w.dtype == np.float32 for w in after if w.dtype.kind == "f")  # float32 masters
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(after, before) if a.size)
    assert moved > 1e-4, moved
