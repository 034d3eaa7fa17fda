"""mrcnn.compact: the compact from-scratch model the synthetic samples share."""
import numpy as np
import pytest

from mrcnn import compact


class _Tiny(compact.CompactConfig):
    NAME = "tiny"
    NUM_CLASSES = 3


class _SmallTiny(compact.SmallCompactConfig, _Tiny):
    pass


def test_small_variant_sizes_win_over_the_dataset_config():
    config = _SmallTiny()
    assert config.BACKBONE is compact.small_backbone
    assert (config.NAME, config.NUM_CLASSES) == ("tiny", 3)
    assert (config.IMAGES_PER_GPU, config.TOP_DOWN_PYRAMID_SIZE, config.MASK_SHAPE) == (2, 32, [14, 14])
    assert (config.DETECTION_MIN_CONFIDENCE, config.STEPS_PER_EPOCH) == (0.3, 2)
    full = _Tiny()
    assert full.BACKBONE is compact.compact_backbone
    assert (full.IMAGES_PER_GPU, full.TOP_DOWN_PYRAMID_SIZE, full.MASK_SHAPE) == (8, 128, [28, 28])


def test_inference_config():
    config = compact.inference_config(_Tiny)
    assert type(config).__name__ == "Inference_Tiny"
    assert (config.IMAGES_PER_GPU, config.BATCH_SIZE, config.NAME) == (1, 1, "tiny")
    with pytest.raises(TypeError, match="Config subclass, got 'tiny'"):
        compact.inference_config("tiny")


def test_learning_rate_curve():
    rates = [compact.learning_rate_at(s, 0.02, 1000, 100) for s in (0, 50, 100, 1000, 5000)]
    np.testing.assert_allclose(rates, [0.002, 0.011, 0.02, 0.0002, 0.0002])


def test_distinct_color_golden_and_distance():
    rng = np.random.default_rng(0)
    colors = [compact.distinct_color(rng, [(0, 0, 0)]) for _ in range(3)]
    # Golden values of samples/shapes.py's _distinct_color before it moved here.
    assert colors == [(217, 163, 130), (69, 78, 10), (208, 166, 233)]
    # No colour is 1000 away from anything: after 100 tries, the complement of the first.
    assert compact.distinct_color(rng, [(10, 20, 30)], min_distance=1000) == (245, 235, 225)


def test_compact_backbone_layer_names():
    import keras

    image = keras.Input((128, 128, 3))
    stages = compact.compact_backbone(image, stage5=False)
    assert stages[-1] is None
    assert [tuple(s.shape[1:]) for s in stages[:4]] == [(64, 64, 32), (32, 32, 64), (16, 16, 96),
                                                        (8, 8, 128)]
    names = {layer.name for layer in keras.Model(image, stages[:4]).layers}
    assert {"conv1", "bn_conv1", "res2a_branch1", "bn4a_branch2b", "res4a_out"} <= names


class _FakeClock:
    """A settable clock (seconds) for the time-budget callback."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class _FakeRate:
    def __init__(self):
        self.value = None

    def assign(self, value):
        self.value = value


class _FakeModel:
    def __init__(self):
        self.optimizer = type("Optimizer", (), {})()
        self.optimizer.learning_rate = _FakeRate()
        self.stop_training = False


def _budget_run(callback, clock, times):
    """Run batches of epoch 1 beginning at ``times`` (seconds after the start); their rates."""
    model = _FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(1)
    rates = []
    for batch, t in enumerate(times):
        clock.now = 1000.0 + t
        callback.on_train_batch_begin(batch)
        rates.append(model.optimizer.learning_rate.value)
        callback.on_train_batch_end(batch)
        if model.stop_training:
            break
    return rates, model


def test_time_budget_warmup_as_a_fraction_of_the_time():
    # 10 minutes, warm-up over the first 5 % (30 s), cosine over the other 570 s.
    clock = _FakeClock()
    callback = compact.time_budget_callback(0.02, 10, warmup_fraction=0.05, clock=clock)
    rates, model = _budget_run(callback, clock, [0, 15, 30, 315, 599, 600, 601])
    np.testing.assert_allclose(rates, [0.002, 0.011, 0.02, 0.0101,
                                       compact.learning_rate_at(9983, 0.02, 10000, 500), 0.0002],
                               rtol=1e-12)
    assert model.stop_training and callback.stopped_at == (1, 5) and callback.stopped_step == 6
    assert callback.step == 6 and callback.epoch == 1


def test_time_budget_warmup_in_steps_then_cosine_over_the_whole_budget():
    # Two warm-up steps whatever the time, then the cosine at the elapsed fraction of 600 s.
    clock = _FakeClock()
    callback = compact.time_budget_callback(0.02, 10, warmup_steps=2, clock=clock)
    rates, model = _budget_run(callback, clock, [0, 300, 300, 450, 600])
    floor = 0.02 / 100
    np.testing.assert_allclose(
        rates, [0.002, 0.011, 0.0101, floor + (0.02 - floor) * 0.5 * (1 + np.cos(0.75 * np.pi)),
                floor], rtol=1e-12)
    assert callback.stopped_at == (1, 4) and callback.stopped_step == 5


def test_time_budget_clock_starts_at_the_first_fit_only():
    clock = _FakeClock()
    callback = compact.time_budget_callback(0.02, 1, warmup_steps=0, clock=clock)
    _budget_run(callback, clock, [10])
    clock.now = 1050.0
    callback.on_train_begin()                        # a second fit keeps the first start
    assert callback.started == 1000.0
    _, model = _budget_run(callback, clock, [59, 60])
    assert callback.stopped_step == 3 and model.stop_training


@pytest.mark.parametrize("kwargs, message", [
    ({"minutes": 0, "warmup_steps": 1}, "minutes must be a positive number, got 0"),
    ({"minutes": 5}, "exactly one of warmup_fraction and warmup_steps"),
    ({"minutes": 5, "warmup_fraction": 0.1, "warmup_steps": 3}, "exactly one of"),
    ({"minutes": 5, "warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\), got 1.0"),
    ({"minutes": 5, "warmup_steps": -1}, "warmup_steps must be an integer >= 0, got -1"),
])
def test_time_budget_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compact.time_budget_callback(0.02, **kwargs)
