"""Weight decay: Keras' kernel regularisers, penalty weight_decay * sum(w^2) / 2."""

import numpy as np
import tensorflow as tf

from model_helpers import images, seeded, tiny_model  # noqa: F401
from tfcifar import models


def total(losses):
  return float(sum(float(l) for l in losses))


def test_weight_decay_is_l2_loss_of_kernels_only():
  wd = 0.01
  model = tiny_model(bn=False, weight_decay=wd)
  rng = np.random.RandomState(0)
  kernels = []
  for layer in model.layers:
    if hasattr(layer, "kernel"):
      kernel = rng.normal(size=layer.kernel.shape).astype("float32")
      layer.kernel.assign(kernel)
      layer.bias.assign(np.full(layer.bias.shape, 100.0, "float32"))
      kernels.append(kernel)
  assert len(kernels) == 4  # conv1_1, conv2_1, fc1, logits
  expected = wd * sum(float(np.sum(k.astype("float64")**2))
                      for k in kernels) / 2
  np.testing.assert_allclose(total(model.losses), expected, rtol=1e-5)


def test_weight_decay_excludes_batchnorm_and_can_be_zero():
  model = tiny_model(bn=True, weight_decay=0.02)
  for layer in models.normalization_layers(model):
    layer.gamma.assign(np.full(layer.gamma.shape, 50.0, "float32"))
  expected = 0.02 * sum(float(np.sum(np.square(l.kernel.numpy())))
                        for l in model.layers if hasattr(l, "kernel")) / 2
  np.testing.assert_allclose(total(model.losses), expected, rtol=1e-5)
  assert not tiny_model(weight_decay=0.0).losses


def test_weight_decay_gradient_in_a_stateless_step():
  """The trainer's XLA step gets the penalty at the values it passes."""
  wd = 0.01
  model = tiny_model(bn=True, weight_decay=wd)
  trainable = [v.value * 2 for v in model.trainable_variables]
  non_trainable = [v.value for v in model.non_trainable_variables]

  @tf.function(jit_compile=True)
  def grads(trainable):
    with tf.GradientTape() as tape:
      tape.watch(trainable)
      _, _, losses = model.stateless_call(
          trainable, non_trainable, images(), training=True,
          return_losses=True)
      penalty = tf.add_n(losses)
    return tape.gradient(penalty, trainable), penalty

  gradients, penalty = grads(trainable)
  kernels = [t.numpy().astype("float64") for v, t in
             zip(model.trainable_variables, trainable)
             if v.path.endswith("kernel")]
  np.testing.assert_allclose(
      penalty, wd * sum(np.sum(k**2) for k in kernels) / 2, rtol=1e-5)
  np.testing.assert_allclose(penalty, 4 * total(model.losses), rtol=1e-5)
  for variable, value, gradient in zip(model.trainable_variables, trainable,
                                       gradients):
    if variable.path.endswith("kernel"):
      np.testing.assert_allclose(gradient, wd * value, rtol=1e-5, atol=1e-7)
    else:  # biases, BatchNorm gamma and beta are not decayed
      assert gradient is None
