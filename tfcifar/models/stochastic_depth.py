"""Stochastic depth (Huang et al. 2016, "Deep networks with stochastic depth").

Section 3: residual block l of L survives a training step with probability

  p_l = 1 - (l / L) * (1 - p_L)          (linear decay, p_L = 0.5)

and is otherwise the identity, H_l = ReLU(b_l * f_l(H_{l-1}) + id(H_{l-1}))
with b_l ~ Bernoulli(p_l), one draw per mini-batch. At test time the residual
branch is scaled by its survival probability: H_l = ReLU(p_l * f_l + id).

`ResidualGate` is the "b_l * f_l + id" (the add of the block). Its Bernoulli
draw comes from a `keras.random.SeedGenerator`, whose state is a
non-trainable variable: it works under `stateless_call`, XLA and
tf.distribute (each replica draws for its own share of the batch), the
trainer checkpoints it, and `.keras` files save it.
"""

import random

import keras
from keras import ops

FINAL_SURVIVAL = 0.5  # p_L, Huang et al. Section 4


def survival_probabilities(num_blocks, final=FINAL_SURVIVAL):
  """[p_1, ..., p_L]: p_l = 1 - l / L * (1 - final)."""
  return [1.0 - l / num_blocks * (1.0 - final)
          for l in range(1, num_blocks + 1)]


@keras.saving.register_keras_serializable(package="tfcifar")
class ResidualGate(keras.layers.Layer):
  """shortcut + b * residual in training (b ~ Bernoulli(survival), one draw
  per call), shortcut + survival * residual at inference.

  Args:
    survival: the block's survival probability p_l in (0, 1].
    seed: int seed of the draws; None draws one from Python's `random` (so
      `keras.utils.set_random_seed` makes it reproducible), kept in the config.
  """

  def __init__(self, survival, seed=None, **kwargs):
    super().__init__(**kwargs)
    if not 0 < survival <= 1:
      raise ValueError(f"survival must be in (0, 1], got {survival}")
    self.survival = float(survival)
    self.seed = int(seed) if seed is not None else random.randint(1, 10**9)
    self.seed_generator = keras.random.SeedGenerator(self.seed)

  def call(self, inputs, training=None):
    shortcut, residual = inputs
    if not training:
      return shortcut + ops.cast(self.survival, residual.dtype) * residual
    draw = keras.random.uniform((), seed=self.seed_generator)
    keep = ops.cast(draw < self.survival, residual.dtype)
    return shortcut + keep * residual

  def compute_output_shape(self, input_shape):
    return input_shape[0]

  def get_config(self):
    return {**super().get_config(), "survival": self.survival,
            "seed": self.seed}

  # The draw stream's position is saved with the weights (.keras files).
  def save_own_variables(self, store):
    store["0"] = self.seed_generator.state

  def load_own_variables(self, store):
    if "0" in store.keys():
      self.seed_generator.state.assign(store["0"])
