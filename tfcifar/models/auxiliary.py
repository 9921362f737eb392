"""Auxiliary classifiers (GoogLeNet, Szegedy et al. 2015, Section 5).

A model with auxiliary heads still has one output, the main logits, so that
evaluation, prediction, `.keras` files and every analysis tool see an
ordinary classifier. Its last layer is `AuxiliaryLogits`, which takes
[main logits, aux logits 1, ...] and returns the main logits: the heads are
part of the model (their weights are saved, checkpointed and decayed) but
only feed the training loss. The trainer asks `training_outputs(model)` for
a model over the same layers that returns every head's logits, and adds each
auxiliary head's cross-entropy times its weight (0.3) to the loss, in
training only.
"""

import keras


@keras.saving.register_keras_serializable(package="tfcifar")
class AuxiliaryLogits(keras.layers.Layer):
  """[logits, aux_1, ..., aux_k] -> logits; `weight` is each aux loss weight."""

  def __init__(self, weight, **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.weight = float(weight)

  def call(self, inputs):
    return inputs[0]

  def compute_output_shape(self, input_shape):
    return input_shape[0]

  def get_config(self):
    return {**super().get_config(), "weight": self.weight}


def training_outputs(model):
  """(model over the same layers returning [logits, aux...], aux weights).

  For a model without auxiliary heads: (model, ()).
  """
  heads = [layer for layer in model.layers
           if isinstance(layer, AuxiliaryLogits)]
  if not heads:
    return model, ()
  if len(heads) > 1:
    raise ValueError(f"{model.name} has {len(heads)} AuxiliaryLogits layers")
  main, *aux = heads[0].input
  step_model = keras.Model(model.inputs, [main, *aux],
                           name=f"{model.name}_training")
  return step_model, (heads[0].weight,) * len(aux)
