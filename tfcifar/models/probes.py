"""Probe models exposing intermediate activations (TensorBoard histograms).

The probed tensors are the inputs of every ReLU of a model: the output of its
(noisy) BatchNorm layer in a `bn` model, the conv/dense output otherwise. They
are keyed by block name ("conv1_1", "fc1", ...), so the same tag compares a
run with BatchNorm against one without.
"""

import keras

RELU_SUFFIX = "_relu"


def relu_inputs(model):
  """{block name: input tensor of the block's ReLU} in network order."""
  return {layer.name[:-len(RELU_SUFFIX)]: layer.input for layer in model.layers
          if isinstance(layer, keras.layers.ReLU)
          and layer.name.endswith(RELU_SUFFIX)}


def normalization_layers(model):
  """The BatchNormalization layers (noisy ones included) of `model`."""
  return [layer for layer in model.layers
          if isinstance(layer, keras.layers.BatchNormalization)]


def post_bn_activations_model(model):
  """keras.Model(model.inputs, {block name: post-BN, pre-ReLU activation}).

  In a `bn` model every tensor is the output of a (noisy) BatchNorm layer; in
  a plain one, of the conv/dense layer at the same place. Call it with
  `training=True` to see the noise of noisy BatchNorm.
  """
  outputs = relu_inputs(model)
  if not outputs:
    raise ValueError(f"model {model.name!r} has no '*{RELU_SUFFIX}' layers")
  inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
  return keras.Model(inputs, outputs, name=f"{model.name}_activations")
