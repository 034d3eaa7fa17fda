"""Predictor: frozen-weight inference equals the variable graph and follows weight changes."""
import numpy as np
import pytest

from mrcnn.model import MaskRCNN
from mrcnn.predictor import Predictor
from tests.conftest import TinyConfig

RPN_CLASS, RPN_BBOX, MRCNN_CLASS = 5, 6, 1


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return MaskRCNN("inference", TinyConfig(), str(tmp_path_factory.mktemp("logs")))


def batch(model, rng, side=128):
    images = [rng.integers(0, 255, (side, side, 3)).astype(np.uint8) for _ in range(2)]
    molded, metas, _ = model.mold_inputs(images)
    return molded, metas


def assert_same_outputs(got, want):
    # The RPN outputs come before any ranking, so they compare element by element; the
    # frozen graph folds BatchNorm into the convs, which changes float rounding only.
    for index in (RPN_CLASS, RPN_BBOX):
        np.testing.assert_allclose(got[index], want[index], rtol=1e-3, atol=1e-4)
    assert [g.shape for g in got] == [w.shape for w in want]


def test_frozen_equals_unfrozen_and_is_frozen_once(model, rng):
    molded, metas = batch(model, rng)
    frozen = Predictor(model.keras_model, freeze=True, freeze_after=1)
    plain = Predictor(model.keras_model, freeze=False)
    want = plain(molded, metas)
    got = frozen(molded, metas)
    assert_same_outputs(got, want)
    frozen(molded, metas)
    assert frozen.freezes == 1  # same weights, same shape: the frozen graph is reused
    assert plain.freezes == 0
    np.testing.assert_array_equal(frozen.fingerprint(), frozen.fingerprint())


def test_weight_change_refreezes(tmp_path, rng):
    model = MaskRCNN("inference", TinyConfig(), str(tmp_path))
    molded, metas = batch(model, rng)
    predictor = Predictor(model.keras_model, freeze=True, freeze_after=1)
    before = predictor(molded, metas)
    layer = model.keras_model.get_layer("rpn_model").get_layer("rpn_class_raw")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * -2.0, bias + 0.5])
    after = predictor(molded, metas)
    assert predictor.freezes == 2
    assert not np.allclose(after[RPN_CLASS], before[RPN_CLASS])
    assert_same_outputs(after, Predictor(model.keras_model, freeze=False)(molded, metas))


def test_many_shapes_fall_back_to_the_variable_graph(model, rng):
    predictor = Predictor(model.keras_model, freeze=True, max_frozen_shapes=1, freeze_after=1)
    molded, metas = batch(model, rng)
    predictor(molded, metas)
    assert predictor.freezes == 1
    single = predictor(molded[:1], metas[:1])  # a second shape: no new frozen graph
    assert predictor.freezes == 1 and not predictor._frozen
    assert_same_outputs(single, Predictor(model.keras_model, freeze=False)(molded[:1], metas[:1]))
    with pytest.raises(ValueError, match="max_frozen_shapes"):
        Predictor(model.keras_model, max_frozen_shapes=0)
    with pytest.raises(ValueError, match="freeze_after"):
        Predictor(model.keras_model, freeze_after=0)


def test_freezing_waits_for_repeated_weights(model, rng):
    molded, metas = batch(model, rng)
    predictor = Predictor(model.keras_model, freeze=True, freeze_after=3)
    for expected in (0, 0, 1, 1):
        predictor(molded, metas)
        assert predictor.freezes == expected


class _Clock:
    """A fake time.perf_counter: the first call's time is ``first`` s, every later one ``later``."""

    def __init__(self, first, later):
        self.now, self.reads, self.first, self.later = 0.0, 0, first, later

    def __call__(self):
        self.reads += 1
        if self.reads % 2 == 0:  # the end of a call
            self.now += self.first if self.reads == 2 else self.later
        return self.now


def test_freezing_waits_until_it_pays_for_itself(model, rng, monkeypatch, caplog):
    """Freeze when freeze_gain of the variable-graph time reaches freeze_cost_ratio x the first
    call: 0.5 * (5 calls x 4 s) = 1 x 10 s, so the 7th call freezes and not the 6th."""
    import mrcnn.predictor

    monkeypatch.setattr(mrcnn.predictor.time, "perf_counter", _Clock(first=10.0, later=4.0))
    molded, metas = batch(model, rng)
    predictor = Predictor(model.keras_model, freeze=True, freeze_cost_ratio=1.0, freeze_gain=0.5)
    for _ in range(6):
        predictor(molded, metas)
    assert predictor.freezes == 0
    with caplog.at_level("INFO", logger="mrcnn.predictor"):
        predictor(molded, metas)
    assert predictor.freezes == 1
    assert "freezing the inference graph for inputs (2, 128, 128, 3) after 6 calls (20.0 s)" \
        in caplog.text


def test_default_policy_does_not_freeze_a_few_calls(model, rng):
    molded, metas = batch(model, rng)
    predictor = Predictor(model.keras_model)
    assert predictor.freeze_after is None
    for _ in range(3):
        predictor(molded, metas)
    assert predictor.freezes == 0
    with pytest.raises(ValueError, match="freeze_gain must be a number in \\(0, 1\\), got 1.5"):
        Predictor(model.keras_model, freeze_gain=1.5)


def test_low_precision_models_are_not_frozen(tmp_path):
    class Bf16(TinyConfig):
        DTYPE_POLICY = "mixed_bfloat16"

    model = MaskRCNN("inference", Bf16(), str(tmp_path))
    image = np.zeros((64, 64, 3), np.uint8)
    model.detect([image, image])
    assert model._predict_fn.freeze is False


def test_detect_uses_the_config_switch(tmp_path, rng):
    class Plain(TinyConfig):
        FREEZE_INFERENCE_WEIGHTS = False

    image = rng.integers(0, 255, (100, 120, 3)).astype(np.uint8)
    frozen_model = MaskRCNN("inference", TinyConfig(), str(tmp_path))
    plain_model = MaskRCNN("inference", Plain(), str(tmp_path))
    plain_model.keras_model.set_weights(frozen_model.keras_model.get_weights())
    a = frozen_model.detect([image, image])
    assert frozen_model._predict_fn.freezes == 0  # the first call runs the variable graph
    frozen_model._predict_fn.freeze_after = 1
    a = frozen_model.detect([image, image])
    b = plain_model.detect([image, image])
    b = plain_model.detect([image, image])
    assert frozen_model._predict_fn.freezes == 1 and plain_model._predict_fn.freezes == 0
    for key in ("rois", "class_ids", "scores", "masks"):
        assert a[0][key].shape[1:] == b[0][key].shape[1:]
    with pytest.raises(ValueError, match="FREEZE_INFERENCE_WEIGHTS"):
        class Bad(TinyConfig):
            FREEZE_INFERENCE_WEIGHTS = "yes"
        Bad()
