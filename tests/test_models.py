"""Tests of tfcifar.models: VGGLike with and without (noisy) BatchNorm."""

import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcifar import models
from tfcifar.errors import UserError
from tfcifar.models import batchnorm
from tfcifar.models import noisy_batchnorm
from tfcifar.models import vgglike

TINY = dict(vgg_stages="8,M,16,M", dense_units=(12,))
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@pytest.fixture(autouse=True)
def seeded():
  keras.utils.set_random_seed(0)


def tiny_model(**overrides):
  return models.build_model(models.ModelConfig(**{**TINY, **overrides}))


def images(batch=4, seed=0):
  return np.random.RandomState(seed).normal(
      size=(batch, 32, 32, 3)).astype("float32")


def expected_param_counts(stages, dense_units, num_classes, bn):
  """(trainable, non-trainable) from the VGGLike architecture."""
  trainable = non_trainable = 0
  channels, size = 3, 32
  for entry in stages:
    if entry == "M":
      size //= 2
      continue
    trainable += 3 * 3 * channels * entry + (0 if bn else entry)
    trainable += 2 * entry if bn else 0  # gamma, beta
    non_trainable += 2 * entry if bn else 0  # moving mean, variance
    channels = entry
  fan_in = size * size * channels
  for units in dense_units:
    trainable += fan_in * units + (0 if bn else units)
    trainable += 2 * units if bn else 0
    non_trainable += 2 * units if bn else 0
    fan_in = units
  trainable += fan_in * num_classes + num_classes
  return trainable, non_trainable


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("spec, multiplier, dense_units, stages, dense", [
    ("8,M,16,M", 1.0, (12,), (8, "M", 16, "M"), (12,)),
    ("vgg11", 1 / 16, (512, 512),
     tuple(e if e == "M" else e // 16 for e in VGG11), (32, 32)),
])
def test_param_counts(bn, spec, multiplier, dense_units, stages, dense):
  model = models.build_model(models.ModelConfig(
      bn=bn, vgg_stages=spec, width_multiplier=multiplier,
      dense_units=dense_units))
  trainable, non_trainable = expected_param_counts(stages, dense, 10, bn)
  count = lambda weights: sum(int(np.prod(w.shape)) for w in weights)
  assert count(model.trainable_weights) == trainable
  assert count(model.non_trainable_weights) == non_trainable
  assert model.count_params() == trainable + non_trainable


def test_full_vgg16_param_count():
  model = models.build_model(models.ModelConfig(bn=True))
  stages = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512,
            "M", 512, 512, 512, "M")
  assert model.count_params() == sum(
      expected_param_counts(stages, (512, 512), 10, bn=True))


def layer_chain(model):
  """model.layers, checking each one consumes its predecessor's output."""
  layers = model.layers
  for previous, layer in zip(layers, layers[1:]):
    assert layer.input is previous.output, (previous.name, layer.name)
  return layers


@pytest.mark.parametrize("noise", [False, True])
def test_bn_between_every_hidden_layer_and_its_relu(noise):
  layers = layer_chain(tiny_model(bn=True, noise=noise))
  bn_type = (noisy_batchnorm.NoisyBatchNormalization if noise
             else batchnorm.BatchNormalization)
  linear = [i for i, l in enumerate(layers)
            if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
  *hidden, logits = linear
  assert [layers[i].name for i in hidden] == ["conv1_1", "conv2_1", "fc1"]
  for i in hidden:
    assert not layers[i].use_bias
    assert layers[i + 1].__class__ is bn_type
    assert isinstance(layers[i + 2], keras.layers.ReLU)
  bn_positions = [i for i, l in enumerate(layers)
                  if isinstance(l, keras.layers.BatchNormalization)]
  assert bn_positions == [i + 1 for i in hidden]
  assert logits == len(layers) - 1  # nothing after the logits layer
  assert layers[logits].use_bias
  assert layers[logits].activation is keras.activations.linear
  assert layers[logits].units == 10


def test_no_bn_keeps_biases_and_nothing_else_changes():
  plain, with_bn = tiny_model(bn=False), tiny_model(bn=True)
  layers = layer_chain(plain)
  assert not any(isinstance(l, keras.layers.BatchNormalization)
                 for l in layers)
  linear = [l for l in layers
            if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
  assert all(l.use_bias for l in linear)
  without_bn = [l.name for l in with_bn.layers
                if not isinstance(l, keras.layers.BatchNormalization)]
  assert [l.name for l in layers] == without_bn


def test_width_multiplier_scales_every_hidden_width_at_least_one():
  model = models.build_model(models.ModelConfig(
      vgg_stages="64,M,3", dense_units=(512,), width_multiplier=0.1))
  widths = {l.name: getattr(l, "filters", getattr(l, "units", None))
            for l in model.layers}
  assert widths["conv1_1"] == 6 and widths["conv2_1"] == 1  # 0.3 -> 1
  assert widths["fc1"] == 51 and widths["logits"] == 10


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
  np.testing.assert_allclose(float(models.weight_decay_loss(model)), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


def test_weight_decay_excludes_batchnorm_and_can_be_zero():
  model = tiny_model(bn=True, weight_decay=0.02)
  for layer in models.normalization_layers(model):
    layer.gamma.assign(np.full(layer.gamma.shape, 50.0, "float32"))
  expected = 0.02 * sum(float(np.sum(np.square(l.kernel.numpy())))
                        for l in model.layers if hasattr(l, "kernel")) / 2
  np.testing.assert_allclose(float(models.weight_decay_loss(model)), expected,
                             rtol=1e-5)
  assert float(models.weight_decay_loss(tiny_model(weight_decay=0.0))) == 0.0


def test_logits_are_float32_under_mixed_precision():
  keras.mixed_precision.set_dtype_policy("mixed_float16")
  try:
    model = tiny_model(bn=True, noise=True)
    assert model.get_layer("conv1_1").compute_dtype == "float16"
    for training in (False, True):
      assert model(images(), training=training).dtype == tf.float32
    assert models.weight_decay_loss(model).dtype == tf.float32
  finally:
    keras.mixed_precision.set_dtype_policy("float32")


def test_same_seed_builds_identical_weights():
  def build(seed):
    keras.utils.set_random_seed(seed)
    return tiny_model(bn=True, noise=True)

  first, second, other = build(3), build(3), build(4)
  for a, b, c in zip(first.weights, second.weights, other.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert any(not np.array_equal(a.numpy(), c.numpy())
             for a, c in zip(first.weights, other.weights))
  seeds = [[l.seed for l in models.normalization_layers(m)]
           for m in (first, second, other)]
  assert seeds[0] == seeds[1] != seeds[2]
  np.testing.assert_array_equal(first(images(), training=True),
                                second(images(), training=True))


def test_registry_rejects_unknown_names_and_accepts_new_ones():
  with pytest.raises(UserError, match="unknown model .resnet9000.*vgglike"):
    models.build_model(models.ModelConfig(name="resnet9000"))

  @models.register_model("test_linear")
  def build_linear(cfg):
    inputs = keras.Input(cfg.input_shape)
    return keras.Model(inputs, keras.layers.Dense(cfg.num_classes)(
        keras.layers.Flatten()(inputs)))

  try:
    assert models.MODELS["test_linear"] is build_linear
    model = models.build_model(models.ModelConfig(name="test_linear"))
    assert model.output.shape == (None, 10)
    with pytest.raises(ValueError, match="already registered"):
      models.register_model("test_linear")(build_linear)
  finally:
    del models.MODELS["test_linear"]


@pytest.mark.parametrize("spec, message", [
    ("64,X,M", "bad entry 'X'"),
    ("64,,M", "bad entry ''"),
    ("64,-8", "bad entry '-8'"),
    ("M,M", "no conv layer"),
    ("8,M,M,M,M,M,M", "6 max-pools, at most 5"),
    ("vgg17", "bad entry 'vgg17'"),
])
def test_bad_vgg_stages_is_a_user_error_naming_the_flag(spec, message):
  with pytest.raises(UserError, match=f"--vgg_stages.*{message}"):
    models.build_model(models.ModelConfig(vgg_stages=spec))


def test_named_stages():
  assert vgglike.parse_stages("VGG16").count("M") == 5
  for name, convs in [("vgg11", 8), ("vgg13", 10), ("vgg16", 13),
                      ("vgg19", 16)]:
    stages = vgglike.parse_stages(name)
    assert sum(1 for s in stages if s != "M") == convs
  assert vgglike.parse_stages(" 4, m ,8") == (4, "M", 8)


@pytest.mark.parametrize("overrides, flag", [
    (dict(noise=True), "--noise needs --bn"),
    (dict(bn=True, noise_std=0.5), "--noise_std"),
    (dict(noise_mean=-1.0), "--noise_mean"),
    (dict(width_multiplier=0.0), "--width_multiplier"),
    (dict(weight_decay=-1e-4), "--weight_decay"),
])
def test_bad_config_is_a_user_error_naming_the_flag(overrides, flag):
  with pytest.raises(UserError, match=flag):
    models.ModelConfig(**overrides)


def test_config_is_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    models.ModelConfig().bn = True


# Noisy BatchNorm.


def bn_pair(channels, noise_mean=1.0, noise_std=2.0, seed=11):
  """A BatchNorm and a noisy BatchNorm with the same random weights."""
  plain = batchnorm.BatchNormalization()
  noisy = models.NoisyBatchNormalization(noise_mean, noise_std, seed=seed)
  rng = np.random.RandomState(1)
  for layer in (plain, noisy):
    layer.build((None, channels))
  for a, b in zip(plain.weights, noisy.weights):
    value = rng.uniform(0.5, 2.0, a.shape).astype("float32")
    a.assign(value)
    b.assign(value)
  return plain, noisy


def channel_inputs(batch, channels, seed=0):
  return np.random.RandomState(seed).normal(
      3.0, 2.0, (batch, channels)).astype("float32")


def test_noisy_bn_is_batchnorm_at_inference():
  plain, noisy = bn_pair(8)
  x = channel_inputs(64, 8)
  np.testing.assert_array_equal(noisy(x, training=False),
                                plain(x, training=False))
  np.testing.assert_array_equal(noisy(x), plain(x))


def regress_per_channel(a, y):
  """Least squares y = slope * a + intercept for each channel (last axis).

  Returns (slopes, intercepts, residuals) with residuals shaped like a.
  """
  a = a.reshape(-1, a.shape[-1]).astype("float64")
  y = y.reshape(-1, y.shape[-1]).astype("float64")
  a_mean, y_mean = a.mean(axis=0), y.mean(axis=0)
  slopes = ((a - a_mean) * (y - y_mean)).mean(axis=0) / a.var(axis=0)
  intercepts = y_mean - slopes * a_mean
  return slopes, intercepts, y - (slopes * a + intercepts)


# Santurkar et al. 2018, Appendix A.2.1, Algorithm 1, with its constants.
N_MU, N_SIGMA, R_MU, R_SIGMA = 0.5, 1.25, 0.1, 0.1


@pytest.mark.parametrize("shape", [(20000, 32), (200, 10, 10, 32)])
def test_noisy_bn_is_algorithm_1_shift_and_scale(shape):
  """Regressing the noisy output on the BN output, channel by channel, gives
  Algorithm 1: slope sigma_j in [1, n_sigma], intercept mu_j in
  [-n_mu, n_mu], and a residual s_ij-jitter * a + m_ij-jitter whose variance
  is r_sigma^2 * E[a^2] + r_mu^2 / 3 (uniform on +-r_mu has variance
  r_mu^2 / 3). Height and width count as part of the batch."""
  channels = shape[-1]
  plain = batchnorm.BatchNormalization()
  noisy = models.NoisyBatchNormalization(seed=3)  # the paper's defaults
  x = np.random.RandomState(0).normal(3.0, 2.0, shape).astype("float32")
  a = plain(x, training=True).numpy()
  y = noisy(x, training=True).numpy()
  slopes, intercepts, residuals = regress_per_channel(a, y)
  se = 6 / np.sqrt(a.size / channels)  # generous standard errors
  assert np.all((slopes >= 1 - se) & (slopes <= N_SIGMA + se))
  assert np.all(np.abs(intercepts) <= N_MU + se)
  # Spread over the ranges: the channels got different (mu_j, sigma_j).
  assert np.ptp(slopes) > (N_SIGMA - 1) / 2 and np.ptp(intercepts) > N_MU
  a2 = (a.reshape(-1, channels) ** 2).mean(axis=0)
  expected = np.sqrt(R_SIGMA**2 * a2 + R_MU**2 / 3)
  np.testing.assert_allclose(residuals.std(axis=0), expected, rtol=0.05)
  assert 0.09 < residuals.std() < 0.14  # "a residual jitter near 0.1"
  # Where a ~ 0 only the shift jitter is left: uniform, within +-r_mu.
  flat_a, flat_r = a.reshape(-1, channels), residuals
  near_zero = np.abs(flat_a) < 0.02
  assert np.abs(flat_r[near_zero]).max() <= R_MU + 0.02 + 0.02 * N_SIGMA
  assert np.abs(flat_r[near_zero]).max() > 0.8 * R_MU


def test_noisy_bn_draws_new_channel_moments_every_step():
  plain = batchnorm.BatchNormalization()
  noisy = models.NoisyBatchNormalization(seed=4)
  x = channel_inputs(8192, 16)
  a = plain(x, training=True).numpy()
  fits = [regress_per_channel(a, noisy(x, training=True).numpy())[:2]
          for _ in range(3)]
  for (s0, m0), (s1, m1) in zip(fits, fits[1:]):
    assert np.abs(s1 - s0).max() > 0.05 and np.abs(m1 - m0).max() > 0.2


def test_noisy_bn_constants_are_the_papers_and_validated():
  layer = models.NoisyBatchNormalization()
  assert (layer.noise_mean, layer.noise_std, layer.noise_mean_jitter,
          layer.noise_std_jitter) == (N_MU, N_SIGMA, R_MU, R_SIGMA)
  for bad in (dict(noise_mean=-0.1), dict(noise_std=0.9),
              dict(noise_mean_jitter=-0.1), dict(noise_std_jitter=-0.1)):
    with pytest.raises(ValueError, match=next(iter(bad))):
      models.NoisyBatchNormalization(**bad)


def test_noisy_bn_without_jitter_is_an_exact_affine_map():
  """r_mu = r_sigma = 0: every activation of a channel gets the same
  sigma_j * a + mu_j (the channel moments of the step's seed)."""
  plain = batchnorm.BatchNormalization()
  noisy = models.NoisyBatchNormalization(noise_mean_jitter=0.0,
                                         noise_std_jitter=0.0, seed=9)
  x = channel_inputs(256, 8)
  a = plain(x, training=True).numpy()
  y = noisy(x, training=True).numpy()
  mu, sigma = noisy_batchnorm.sample_channel_moments(
      8, tf.constant([9, 0], tf.int64), N_MU, N_SIGMA)
  np.testing.assert_allclose(y, sigma.numpy() * a + mu.numpy(), atol=1e-5)


def noise_channel_means(plain, x, call):
  return (call(x) - plain(x, training=True)).numpy().mean(axis=0)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_noisy_bn_noise_changes_every_step(jit_compile):
  plain, noisy = bn_pair(16, noise_mean=0.5, noise_std=1.25)
  call = tf.function(lambda x: noisy(x, training=True),
                     jit_compile=jit_compile)
  x = channel_inputs(4096, 16)
  first = noise_channel_means(plain, x, call)
  second = noise_channel_means(plain, x, call)
  assert np.abs(first - second).max() > 0.2  # new mu_j: new distribution
  np.testing.assert_array_equal(noisy.seed_generator.state.numpy(), [11, 2])


def test_add_channel_noise_is_pure():
  x = tf.zeros((512, 4, 4, 8))
  seed, other = tf.constant([1, 2], tf.int64), tf.constant([1, 3], tf.int64)
  add = noisy_batchnorm.add_channel_noise
  a, b = add(x, seed, seed, 0.5, 1.25), add(x, seed, seed, 0.5, 1.25)
  np.testing.assert_array_equal(a, b)
  c = add(x, seed, other, 0.5, 1.25)  # same moments, other draws
  assert not np.allclose(a, c)
  np.testing.assert_allclose(np.mean(a, axis=(0, 1, 2)),
                             np.mean(c, axis=(0, 1, 2)), atol=0.05)
  assert add(tf.zeros((2, 8), tf.float16), seed, seed, 0.5, 1.25).dtype == (
      tf.float16)


def test_noisy_bn_config_round_trips():
  layer = models.NoisyBatchNormalization(noise_mean=0.3, noise_std=1.7,
                                         seed=5, momentum=0.9, name="nbn")
  config = layer.get_config()
  assert config["noise_mean"] == 0.3 and config["noise_std"] == 1.7
  assert config["seed"] == 5 and config["momentum"] == 0.9
  assert models.NoisyBatchNormalization.from_config(config).get_config() == (
      config)
  clone = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(layer))
  assert isinstance(clone, models.NoisyBatchNormalization)
  assert clone.get_config() == config
  unseeded = [models.NoisyBatchNormalization() for _ in range(2)]
  assert unseeded[0].seed != unseeded[1].seed  # drawn, then recorded


@pytest.mark.parametrize("noise", [False, True])
def test_save_and_load_keras_gives_identical_predictions(tmp_path, noise):
  model = tiny_model(bn=True, noise=noise)
  for seed in range(2):  # move the moving stats and the noise stream
    model(images(seed=seed), training=True)
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  x = images(8, seed=5)
  np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                model.predict(x, verbose=0))
  bn_types = {type(l) for l in models.normalization_layers(loaded)}
  assert bn_types == {noisy_batchnorm.NoisyBatchNormalization if noise
                      else batchnorm.BatchNormalization}
  # The noise stream continues where it was saved.
  np.testing.assert_array_equal(loaded(x, training=True),
                                model(x, training=True))


@pytest.mark.parametrize("bn, noise", [(False, False), (True, False),
                                       (True, True)])
def test_post_bn_activations_model(bn, noise):
  model = tiny_model(bn=bn, noise=noise)
  probe = models.post_bn_activations_model(model)
  x = images(16)
  activations = probe(x, training=True)
  assert list(activations) == ["conv1_1", "conv2_1", "fc1"]
  assert activations["conv2_1"].shape == (16, 16, 16, 16)
  tapped = model.get_layer("conv1_1_bn" if bn else "conv1_1")
  tap = keras.Model(model.inputs[0], tapped.output)
  np.testing.assert_array_equal(probe(x, training=False)["conv1_1"],
                                tap(x, training=False))
  means = np.mean(activations["conv1_1"], axis=(0, 1, 2))
  if bn and not noise:  # post-BN in training: zero mean per channel
    np.testing.assert_allclose(means, 0, atol=1e-4)
  if noise:  # plus this step's noise means m[t, c] ~ U(-0.5, 0.5)
    assert np.abs(means).max() > 0.1


def test_noise_and_replica_sync_under_mirrored_strategy_with_xla():
  """The distributed check (fresh process: it sets logical CPU devices)."""
  result = subprocess.run(
      [sys.executable, os.path.join(os.path.dirname(__file__),
                                    "distributed_check.py"),
       "--checks=noise,train_noisy_bn", "--jit_compile=noise"],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert "noise: ok" in result.stdout
  assert "train_noisy_bn: ok" in result.stdout


def test_weight_decay_gradient_in_a_stateless_step():
  """The trainer's XLA step differentiates weight decay w.r.t. passed values."""
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
      explicit = models.weight_decay_loss(model, trainable)
    return tape.gradient(explicit, trainable), explicit, tf.add_n(losses)

  gradients, explicit, collected = grads(trainable)
  np.testing.assert_allclose(explicit, collected, rtol=1e-6)
  np.testing.assert_allclose(explicit, 4 * models.weight_decay_loss(model),
                             rtol=1e-5)
  for variable, value, gradient in zip(model.trainable_variables, trainable,
                                       gradients):
    if variable.path.endswith("kernel"):
      np.testing.assert_allclose(gradient, wd * value, rtol=1e-5, atol=1e-7)
    else:  # biases, BatchNorm gamma and beta are not decayed
      assert gradient is None
