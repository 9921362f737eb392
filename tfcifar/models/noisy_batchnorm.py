"""Noisy BatchNorm (Santurkar et al. 2018, "How does batch normalization help
optimization?", Section 2.1 and Figure 2).

BatchNorm followed, in training only, by additive noise whose distribution
changes at every step, so that the inputs of the next layer drift much more
than without BatchNorm ("internal covariate shift" made worse on purpose):

  y = BN(x)                                          (training: batch stats)
  at step t, for each channel c:
    m[t, c] ~ U(-noise_mean, noise_mean)
    s[t, c] ~ U(1, noise_std)
  out[b, ..., c] = y[b, ..., c] + n[b, ..., c],  n ~ N(m[t, c], s[t, c]^2)
                   i.i.d. over every sample b and every position of channel c.

At inference the layer is exactly `keras.layers.BatchNormalization`.

The maths is `add_channel_noise`, a pure function of tensors and stateless
seeds; the layer holds the BatchNorm weights and a `keras.random.SeedGenerator`
that advances once per training call (inside `tf.function`/XLA too, as
ordinary variable state, or through `stateless_call`). Under
`tf.distribute` the per-step channel moments (m, s) are the same on every
replica while the per-activation draws differ between replicas, so the noise
is i.i.d. over the global batch.
"""

import random

import keras
import tensorflow as tf
from keras import ops

from tfcifar.models import batchnorm

# The paper's Figure 2 values, n_mu = 0.5 and n_sigma = 1.25. Each step moves
# every channel's mean to m in [-0.5, 0.5] (a jump of 0.41 BN units rms from
# one step to the next) and raises its variance from 1 to 1 + s^2 in
# [2, 2.56], where plain BatchNorm keeps them at exactly beta and gamma^2.
DEFAULT_NOISE_MEAN = 0.5
DEFAULT_NOISE_STD = 1.25

_INT32_MAX = 2**31 - 1


def _as_int32_seed(seed):
  """A [2] seed usable by stateless TF random ops under XLA (int32)."""
  seed = tf.convert_to_tensor(seed)
  if seed.dtype == tf.int32:
    return seed
  return tf.cast(tf.math.floormod(tf.cast(seed, tf.int64), _INT32_MAX - 1),
                 tf.int32)


def sample_channel_moments(num_channels, seed, noise_mean, noise_std):
  """The step's moments: m ~ U(-noise_mean, noise_mean), s ~ U(1, noise_std).

  Args:
    num_channels: C.
    seed: a stateless seed, int tensor of shape [2].
    noise_mean: half-width of the uniform range of the channel means (>= 0).
    noise_std: upper end of the uniform range of the channel std devs (>= 1).

  Returns:
    (m, s), two float32 tensors of shape [C].
  """
  u = tf.random.stateless_uniform((2, num_channels), seed=_as_int32_seed(seed),
                                  dtype=tf.float32)
  m = noise_mean * (2.0 * u[0] - 1.0)
  s = 1.0 + (noise_std - 1.0) * u[1]
  return m, s


def add_channel_noise(x, channel_seed, sample_seed, noise_mean, noise_std,
                      axis=-1):
  """x + N(m[c], s[c]^2) i.i.d. per element, with (m, s) drawn per channel.

  Pure: the same seeds give the same result.

  Args:
    x: activations, channel axis `axis` (float16 or float32).
    channel_seed: [2] int seed of the step's per-channel moments (m, s); the
      same on every replica.
    sample_seed: [2] int seed of the per-element normal draws.
    noise_mean: the m[c] are U(-noise_mean, noise_mean).
    noise_std: the s[c] are U(1, noise_std).
    axis: the channel axis of x.

  Returns:
    x plus the noise, in x's dtype (the noise is computed in float32).
  """
  rank = len(x.shape)
  axis = axis % rank
  num_channels = x.shape[axis]
  m, s = sample_channel_moments(num_channels, channel_seed, noise_mean,
                                noise_std)
  channel_shape = [1] * rank
  channel_shape[axis] = num_channels
  z = tf.random.stateless_normal(tf.shape(x), seed=_as_int32_seed(sample_seed),
                                 dtype=tf.float32)
  noise = ops.reshape(m, channel_shape) + ops.reshape(s, channel_shape) * z
  return ops.cast(ops.cast(x, "float32") + noise, x.dtype)


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
  """BatchNorm, then (training only) noise that changes at every step.

  Formula (Santurkar et al. 2018, Sec. 2.1): with y = BatchNorm(x), at step t
  draw for each channel c

    m[t, c] ~ U(-noise_mean, noise_mean),   s[t, c] ~ U(1, noise_std),

  and output y + n with n ~ N(m[t, c], s[t, c]^2) i.i.d. over every sample and
  every spatial position of channel c. Defaults noise_mean=0.5,
  noise_std=1.25 (the paper's n_mu, n_sigma). At inference (training=False)
  the output is exactly BatchNorm's.

  Args:
    noise_mean: half-width of the range of the per-channel noise means (>= 0).
    noise_std: upper end of the range of the per-channel noise standard
      deviations (>= 1).
    seed: int seed of the noise stream; None draws one from Python's `random`
      (so `keras.utils.set_random_seed` makes it reproducible) and records it
      in the config.
    **kwargs: passed to `keras.layers.BatchNormalization`.

  The moving statistics are averaged over replicas (see `batchnorm`).
  """

  def __init__(self, noise_mean=DEFAULT_NOISE_MEAN,
               noise_std=DEFAULT_NOISE_STD, seed=None, **kwargs):
    super().__init__(**kwargs)
    if noise_mean < 0:
      raise ValueError(f"noise_mean must be >= 0, got {noise_mean}")
    if noise_std < 1:
      raise ValueError(f"noise_std must be >= 1, got {noise_std}")
    self.noise_mean = float(noise_mean)
    self.noise_std = float(noise_std)
    self.seed = int(seed) if seed is not None else random.randint(1, 10**9)
    self.seed_generator = keras.random.SeedGenerator(self.seed)

  def call(self, inputs, training=None, mask=None):
    outputs = super().call(inputs, training=training, mask=mask)
    if not training:
      return outputs
    channel_seed, sample_seed = step_seeds(self.seed_generator.next())
    return add_channel_noise(outputs, channel_seed, sample_seed,
                             self.noise_mean, self.noise_std, axis=self.axis)

  def get_config(self):
    return {**super().get_config(), "noise_mean": self.noise_mean,
            "noise_std": self.noise_std, "seed": self.seed}

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
