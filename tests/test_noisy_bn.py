"""Noisy BatchNorm: Santurkar et al. 2018, Algorithm 1, its maths and state."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcifar import models
from tfcifar.errors import UserError
from tfcifar.models import batchnorm
from tfcifar.models import noisy_batchnorm


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
    with pytest.raises(UserError, match=next(iter(bad))):
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
