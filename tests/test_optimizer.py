"""MomentumSGD gives the same update as Keras SGD on the loss plus the L2 penalty."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.training import MomentumSGD, is_decayed


def make_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, activation="tanh", name="fc1")(inputs)
    x = keras.layers.Dense(3, name="fc2")(x)
    return keras.Model(inputs, x)


def run_steps(model, optimizer, data, decay_in_loss, steps=4):
    x, y = data
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((model(x) - y) ** 2)
            if decay_in_loss:
                loss += 0.5 * decay_in_loss * tf.add_n(
                    [tf.reduce_sum(v ** 2) for v in model.trainable_weights if is_decayed(v)])
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
    return [w.numpy() for w in model.trainable_weights]


@pytest.mark.parametrize("clipnorm,momentum,scale", [(None, 0.9, 1.0), (0.5, 0.9, 1.0),
                                                     (0.5, 0.0, 1.0), (1e4, 0.9, 30.0)])
def test_momentum_sgd_matches_keras_sgd_with_decay_in_the_loss(clipnorm, momentum, scale):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, 6)).astype(np.float32) * scale,
            rng.normal(size=(8, 3)).astype(np.float32))
    decay = 0.05
    reference = run_steps(make_model(1), keras.optimizers.SGD(
        learning_rate=0.02, momentum=momentum, global_clipnorm=clipnorm), data, decay)
    fused = run_steps(make_model(1), MomentumSGD(
        learning_rate=0.02, momentum=momentum, global_clipnorm=clipnorm, l2_decay=decay), data, 0)
    untouched = [w.numpy() for w in make_model(1).trainable_weights]
    for ref, got, start in zip(reference, fused, untouched):
        assert not np.allclose(ref, start)  # the steps moved the weights
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6)


def test_clipping_is_active_in_the_clipped_case():
    # With clipnorm 0.5 the gradients here are clipped: the update differs from unclipped SGD.
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, 6)).astype(np.float32), rng.normal(size=(8, 3)).astype(np.float32))
    clipped = run_steps(make_model(1), MomentumSGD(0.02, 0.9, global_clipnorm=0.5), data, 0, steps=1)
    free = run_steps(make_model(1), MomentumSGD(0.02, 0.9), data, 0, steps=1)
    assert not np.allclose(clipped[0], free[0])


def test_momentum_sgd_validation_and_config():
    with pytest.raises(ValueError, match="l2_decay"):
        MomentumSGD(0.01, l2_decay=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        MomentumSGD(0.01, nesterov=True)
    with pytest.raises(ValueError, match="global_clipnorm"):
        MomentumSGD(0.01, clipnorm=1.0)
    config = MomentumSGD(0.01, 0.9, global_clipnorm=5.0, l2_decay=1e-4).get_config()
    restored = MomentumSGD.from_config(config)
    assert (restored.l2_decay, restored.global_clipnorm, float(restored.momentum)) == (1e-4, 5.0, 0.9)


@pytest.mark.parametrize("wrap", [False, True])
def test_trainer_leaves_the_decay_gradient_to_momentum_sgd(wrap):
    from mrcnn.training import MaskRCNNTrainer
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="fc")(inputs)
    kernel = None

    def decay_and_grad(optimizer):
        nonlocal kernel
        trainer = MaskRCNNTrainer(inputs, {"y": outputs}, weight_decay=0.1)
        trainer.compile(optimizer=optimizer)
        kernel = trainer.get_layer("fc").kernel
        with tf.GradientTape() as tape:
            value = trainer.weight_decay_loss()
        return float(value), tape.gradient(value, kernel.value)

    fused = MomentumSGD(0.01, 0.9, l2_decay=0.1)
    if wrap:  # what Keras does under mixed_float16
        fused = keras.optimizers.LossScaleOptimizer(fused)
    value, grad = decay_and_grad(fused)
    np.testing.assert_allclose(value, 0.05 * np.sum(np.square(kernel.numpy())), rtol=1e-6)
    assert grad is None  # MomentumSGD adds the decay gradient itself
    value, grad = decay_and_grad(keras.optimizers.SGD(0.01))
    np.testing.assert_allclose(grad.numpy(), 0.1 * kernel.numpy(), rtol=1e-6)
