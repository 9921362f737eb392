"""L2 weight decay on conv and dense kernels, TF `l2_loss` convention.

The penalty is weight_decay * sum(w^2) / 2 (tf.nn.l2_loss(w) = sum(w^2) / 2),
implemented as `keras.regularizers.L2(weight_decay / 2)` on each kernel so that
`sum(model.losses)` equals it. Biases and BatchNorm parameters are not decayed.
"""

import keras
from keras import ops


def kernel_regularizer(weight_decay):
  """The kernel regularizer for `weight_decay` (None when it is 0)."""
  if not weight_decay:
    return None
  return keras.regularizers.L2(weight_decay / 2)


def all_layers(model):
  """Every layer of `model`, nested models included, depth first."""
  for layer in model.layers:
    yield layer
    if hasattr(layer, "layers"):
      yield from all_layers(layer)


def regularized_kernels(model):
  """(layer, kernel regularizer) for every layer of `model` that has one."""
  return [(layer, layer.kernel_regularizer) for layer in all_layers(model)
          if getattr(layer, "kernel_regularizer", None) is not None]


def weight_decay_loss(model, trainable_values=None):
  """weight_decay * sum(w^2) / 2 over the regularized kernels (float32 scalar).

  Equals `sum(model.losses)` for the models of this package; usable inside
  `tf.function` and XLA.

  Args:
    model: a model of this package.
    trainable_values: optional tensors aligned with
      `model.trainable_variables`, e.g. those a stateless step passes to
      `model.stateless_call`: the loss (and its gradient) is then taken at
      these values instead of the variables'. Without them the variables are
      read (through `KerasVariable.value`, so inside a `StatelessScope` the
      scope's values are used).
  """
  values = {}
  if trainable_values is not None:
    values = {id(v): t for v, t in zip(model.trainable_variables,
                                       trainable_values)}
  terms = [ops.cast(regularizer(values.get(id(layer.kernel),
                                           layer.kernel.value)), "float32")
           for layer, regularizer in regularized_kernels(model)]
  if not terms:
    return ops.zeros((), "float32")
  return ops.sum(ops.stack(terms))
