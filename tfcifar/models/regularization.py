"""L2 weight decay on conv and dense kernels, TF `l2_loss` convention.

The penalty is weight_decay * sum(w^2) / 2 (tf.nn.l2_loss(w) = sum(w^2) / 2, as
TF-slim's `l2_regularizer` did), implemented as
`keras.regularizers.L2(weight_decay / 2)` on each kernel: `sum(model.losses)`
equals it, and a stateless step gets it (at the values it passes) from
`model.stateless_call(..., return_losses=True)`. Biases and BatchNorm
parameters are not decayed.
"""

import keras


def kernel_regularizer(weight_decay):
  """The kernel regularizer for `weight_decay` (None when it is 0)."""
  if not weight_decay:
    return None
  return keras.regularizers.L2(weight_decay / 2)
