"""Noisy BatchNorm (Santurkar et al. 2018, "How does batch normalization help
optimization?", Section 2.1, Figure 2, and Appendix A.2.1, Algorithm 1).

BatchNorm followed, in training only, by a per-step, per-channel random *shift
and scale* with a small per-activation jitter, so that the distribution of
every layer's inputs changes at every step ("internal covariate shift" made
worse on purpose). With a = BN(x) the batch-normalised activation, j the unit
(channel) and i the sample (height and width count as part of the batch for
convolutions), at every training step Algorithm 1 draws

  mu_j    ~ U(-n_mu, n_mu)                 sigma_j ~ U(1, n_sigma)
                                           (per channel, new each step)
  m_ij    ~ U(mu_j - r_mu, mu_j + r_mu)    s_ij    ~ N(sigma_j, r_sigma^2)
                                           (per activation)
  a_ij   <- s_ij * a_ij + m_ij

with the paper's n_mu = 0.5, n_sigma = 1.25, r_mu = r_sigma = 0.1 (r_sigma is
the standard deviation of s). At inference the layer is exactly
`keras.layers.BatchNormalization`.

The maths is `add_channel_noise`, a pure function of tensors and stateless
seeds; the layer holds the BatchNorm weights and a `keras.random.SeedGenerator`
that advances once per training call (inside `tf.function`/XLA too, as
ordinary variable state, or through `stateless_call`). Under `tf.distribute`
the step's channel moments (mu, sigma) are the same on every replica while the
per-activation draws (m, s) differ between replicas, so the noise is what one
device would draw for the global batch.
"""

import dataclasses
import random

import keras
import tensorflow as tf
from keras import ops

from tfcifar.config import check_values
from tfcifar.config import ModelConfig
from tfcifar.models import batchnorm

# Algorithm 1's constants (Appendix A.2.1): n_mu, n_sigma (the ranges of the
# per-step channel shift and scale) and r_mu, r_sigma (the per-activation
# jitter: half-width of m's uniform range, standard deviation of s). They are
# the defaults of the config's fields, where their bounds are checked.
_NOISE_FIELDS = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                 if f.name.startswith("noise_")}
DEFAULT_NOISE_MEAN = _NOISE_FIELDS["noise_mean"]
DEFAULT_NOISE_STD = _NOISE_FIELDS["noise_std"]
DEFAULT_NOISE_MEAN_JITTER = _NOISE_FIELDS["noise_mean_jitter"]
DEFAULT_NOISE_STD_JITTER = _NOISE_FIELDS["noise_std_jitter"]

_INT32_MAX = 2**31 - 1


def _as_int32_seed(seed):
  """A [2] seed usable by stateless TF random ops under XLA (int32)."""
  seed = tf.convert_to_tensor(seed)
  if seed.dtype == tf.int32:
    return seed
  return tf.cast(tf.math.floormod(tf.cast(seed, tf.int64), _INT32_MAX - 1),
                 tf.int32)


def sample_channel_moments(num_channels, seed, noise_mean, noise_std):
  """The step's channel moments: mu ~ U(-n_mu, n_mu), sigma ~ U(1, n_sigma).

  Args:
    num_channels: C.
    seed: a stateless seed, int tensor of shape [2].
    noise_mean: n_mu, half-width of the uniform range of the shifts (>= 0).
    noise_std: n_sigma, upper end of the uniform range of the scales (>= 1).

  Returns:
    (mu, sigma), two float32 tensors of shape [C].
  """
  u = tf.random.stateless_uniform((2, num_channels), seed=_as_int32_seed(seed),
                                  dtype=tf.float32)
  mu = noise_mean * (2.0 * u[0] - 1.0)
  sigma = 1.0 + (noise_std - 1.0) * u[1]
  return mu, sigma


def add_channel_noise(x, channel_seed, sample_seed, noise_mean, noise_std,
                      noise_mean_jitter=DEFAULT_NOISE_MEAN_JITTER,
                      noise_std_jitter=DEFAULT_NOISE_STD_JITTER, axis=-1):
  """Algorithm 1 of Santurkar et al. 2018: s * x + m, per activation.

  With (mu, sigma) = `sample_channel_moments(...)` of the step,
  m ~ U(mu - r_mu, mu + r_mu) and s ~ N(sigma, r_sigma^2), drawn independently
  for every element of x. Pure: the same seeds give the same result.

  Args:
    x: batch-normalised activations, channel axis `axis` (float16/32).
    channel_seed: [2] int seed of the step's per-channel (mu, sigma); the same
      on every replica.
    sample_seed: [2] int seed of the per-activation (m, s).
    noise_mean: n_mu; mu ~ U(-n_mu, n_mu).
    noise_std: n_sigma; sigma ~ U(1, n_sigma).
    noise_mean_jitter: r_mu; m ~ U(mu - r_mu, mu + r_mu).
    noise_std_jitter: r_sigma; s ~ N(sigma, r_sigma^2).
    axis: the channel axis of x.

  Returns:
    s * x + m in x's dtype (computed in float32).
  """
  rank = len(x.shape)
  axis = axis % rank
  num_channels = x.shape[axis]
  mu, sigma = sample_channel_moments(num_channels, channel_seed, noise_mean,
                                     noise_std)
  channel_shape = [1] * rank
  channel_shape[axis] = num_channels
  mu = ops.reshape(mu, channel_shape)
  sigma = ops.reshape(sigma, channel_shape)
  seed = _as_int32_seed(sample_seed)
  shift_seed, scale_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  u = tf.random.stateless_uniform(tf.shape(x), seed=shift_seed,
                                  dtype=tf.float32)
  z = tf.random.stateless_normal(tf.shape(x), seed=scale_seed,
                                 dtype=tf.float32)
  m = mu + noise_mean_jitter * (2.0 * u - 1.0)
  s = sigma + noise_std_jitter * z
  return ops.cast(s * ops.cast(x, "float32") + m, x.dtype)


def replica_id():
  """This replica's index in its `tf.distribute` sync group (0 outside one)."""
  context = tf.distribute.get_replica_context()
  if context is None:  # cross-replica context: one logical computation
    return tf.constant(0, tf.int32)
  return tf.cast(context.replica_id_in_sync_group, tf.int32)


def step_seeds(step_seed):
  """(channel_seed, sample_seed) of one step from the generator's seed.

  The channel seed is the step seed itself, identical on every replica; the
  sample seed folds in the replica index so replicas draw independent noise.
  """
  sample_seed = tf.random.experimental.stateless_fold_in(
      tf.cast(step_seed, tf.int64), replica_id() + 1)
  return step_seed, sample_seed


@keras.saving.register_keras_serializable(package="tfcifar")
class NoisyBatchNormalization(batchnorm.BatchNormalization):
  """BatchNorm, then (training only) Algorithm 1's per-step shift and scale.

  With a = BatchNorm(x) (batch statistics), at every training step draw per
  channel j mu_j ~ U(-noise_mean, noise_mean), sigma_j ~ U(1, noise_std), and
  per activation m_ij ~ U(mu_j - noise_mean_jitter, mu_j + noise_mean_jitter),
  s_ij ~ N(sigma_j, noise_std_jitter^2); output s_ij * a_ij + m_ij (Santurkar
  et al. 2018, Appendix A.2.1, Algorithm 1; defaults are the paper's n_mu=0.5,
  n_sigma=1.25, r_mu=r_sigma=0.1). At inference (training=False) the output is
  exactly BatchNorm's.

  Args:
    noise_mean: n_mu, half-width of the range of the channel shifts (>= 0).
    noise_std: n_sigma, upper end of the range of the channel scales (>= 1).
    noise_mean_jitter: r_mu, half-width of the per-activation shift's range
      around mu_j (>= 0).
    noise_std_jitter: r_sigma, standard deviation of the per-activation scale
      around sigma_j (>= 0).
    seed: int seed of the noise stream; None draws one from Python's `random`
      (so `keras.utils.set_random_seed` makes it reproducible) and records it
      in the config.
    **kwargs: passed to `keras.layers.BatchNormalization`.

  The moving statistics are averaged over replicas (see `batchnorm`).
  """

  def __init__(self, noise_mean=DEFAULT_NOISE_MEAN,
               noise_std=DEFAULT_NOISE_STD,
               noise_mean_jitter=DEFAULT_NOISE_MEAN_JITTER,
               noise_std_jitter=DEFAULT_NOISE_STD_JITTER, seed=None, **kwargs):
    super().__init__(**kwargs)
    check_values(ModelConfig, noise_mean=noise_mean, noise_std=noise_std,
                 noise_mean_jitter=noise_mean_jitter,
                 noise_std_jitter=noise_std_jitter)
    self.noise_mean = float(noise_mean)
    self.noise_std = float(noise_std)
    self.noise_mean_jitter = float(noise_mean_jitter)
    self.noise_std_jitter = float(noise_std_jitter)
    self.seed = int(seed) if seed is not None else random.randint(1, 10**9)
    self.seed_generator = keras.random.SeedGenerator(self.seed)

  def call(self, inputs, training=None, mask=None):
    outputs = super().call(inputs, training=training, mask=mask)
    if not training:
      return outputs
    channel_seed, sample_seed = step_seeds(self.seed_generator.next())
    return add_channel_noise(outputs, channel_seed, sample_seed,
                             self.noise_mean, self.noise_std,
                             self.noise_mean_jitter, self.noise_std_jitter,
                             axis=self.axis)

  def get_config(self):
    return {**super().get_config(), "noise_mean": self.noise_mean,
            "noise_std": self.noise_std,
            "noise_mean_jitter": self.noise_mean_jitter,
            "noise_std_jitter": self.noise_std_jitter, "seed": self.seed}

  # The noise stream's position is saved with the weights (.keras and
  # .weights.h5) so that a restored model continues the same noise sequence.
  def _weight_variables(self):
    return self._trainable_variables + self._non_trainable_variables

  def save_own_variables(self, store):
    super().save_own_variables(store)
    store[str(len(self._weight_variables()))] = self.seed_generator.state

  def load_own_variables(self, store):
    state_key = str(len(self._weight_variables()))
    if state_key in store.keys():
      self.seed_generator.state.assign(store[state_key])
      store = {k: store[k] for k in store.keys() if k != state_key}
    super().load_own_variables(store)
