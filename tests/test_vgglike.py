"""VGGLike: architecture, widths, the registry, stages, save/load, probes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_helpers import images, seeded, tiny_model  # noqa: F401
from tfcifar import models
from tfcifar.errors import UserError
from tfcifar.models import batchnorm
from tfcifar.models import noisy_batchnorm
from tfcifar.models import vgglike

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


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

def test_logits_are_float32_under_mixed_precision():
  keras.mixed_precision.set_dtype_policy("mixed_float16")
  try:
    model = tiny_model(bn=True, noise=True)
    assert model.get_layer("conv1_1").compute_dtype == "float16"
    for training in (False, True):
      assert model(images(), training=training).dtype == tf.float32
    assert model.losses and all(l.dtype == tf.float32 for l in model.losses)
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
  with pytest.raises(UserError,
                     match="--model=resnet9000 is not one of .*vgglike"):
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
