"""tfcifar.visualize: activation maximisation and BagNet heatmaps."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfcifar import visualize
from tfcifar.errors import UserError


def cli(*args):
  return subprocess.run([sys.executable, "-m", "tfcifar.visualize", *args],
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def tiny_cnn():
  """A small random conv net; the layer `relu` has 4 channels."""
  keras.utils.set_random_seed(0)
  images = keras.Input((32, 32, 3), name="images")
  x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(images)
  x = keras.layers.ReLU(name="relu")(x)
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  return keras.Model(images, keras.layers.Dense(10, name="logits")(x))


def tiny_bagnet(classes=10):
  """BagNet-like: 4x4 patches -> per-location logits -> spatial mean."""
  keras.utils.set_random_seed(1)
  images = keras.Input((32, 32, 3), name="images")
  x = keras.layers.Conv2D(8, 4, strides=4, name="patch_features")(images)
  x = keras.layers.ReLU()(x)
  x = keras.layers.Conv2D(classes, 1, name=visualize.PATCH_LOGITS_LAYER)(x)
  logits = keras.layers.GlobalAveragePooling2D(name="logits")(x)
  return keras.Model(images, logits, name="tiny_bagnet")


# --- activation maximisation -------------------------------------------------


def test_activation_maximisation_raises_each_unit_well_above_the_noise():
  model = tiny_cnn()
  units = [0, 1, 2, 3]
  low, high = np.full(3, -2.0), np.full(3, 2.0)
  start = visualize.noise_images(len(units), low, high, seed=0)
  images = visualize.maximize_activation(
      visualize.feature_model(model, "relu"), units, start, steps=32,
      low=low, high=high)
  assert images.min() >= -2.0 and images.max() <= 2.0  # kept in bounds
  relu = keras.Model(model.inputs[0], model.get_layer("relu").output)

  def activation(batch):  # mean over positions of unit u in image u
    values = np.asarray(relu.predict_on_batch(batch)).mean(axis=(1, 2))
    return values[np.arange(len(units)), units]

  before, after = activation(start), activation(images)
  assert np.all(after > 5 * before + 0.2), (before, after)


def test_unknown_layer_lists_the_layers_on_one_line():
  model = tiny_cnn()
  with pytest.raises(UserError) as error:
    visualize.feature_model(model, "conv9")
  message = str(error.value)
  assert "\n" not in message
  assert message.endswith("images, conv, relu, pool, logits")


def test_blur_keeps_a_constant_image():
  images = np.full((2, 8, 8, 3), 0.7, np.float32)
  np.testing.assert_allclose(visualize.blur(images), images, atol=1e-6)


def test_command_draws_a_grid(tmp_path, tiny_run):
  out = str(tmp_path / "grid.png")
  result = cli(f"--model_dir={tiny_run}", "--layer=conv2_1_relu",
               "--units=0-3", "--steps=16", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert os.path.getsize(out) > 0
  bad = cli(f"--model_dir={tiny_run}", "--layer=nope", "--units=0")
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [
      "error: --layer='nope' is not a layer of the model 'vgglike'; its "
      "layers: images, conv1_1, conv1_1_relu, pool1, conv2_1, conv2_1_relu, "
      "pool2, flatten, fc1, fc1_relu, fc2, fc2_relu, logits"]


# --- BagNet heatmaps ---------------------------------------------------------


def test_heatmaps_average_back_to_the_logits():
  model = tiny_bagnet()
  images = np.random.default_rng(0).normal(size=(5, 32, 32, 3)).astype(
      np.float32)
  maps, logits = visualize.patch_logit_maps(
      visualize.patch_logits_model(model), images, batch_size=2)
  assert maps.shape == (5, 8, 8, 10)
  np.testing.assert_allclose(maps.mean(axis=(1, 2)),
                             model.predict_on_batch(images), atol=1e-5)
  visualize.check_bagnet_contract(maps, logits)  # passes
  classes = np.array([3, 0, 9, 3, 1])
  heat = visualize.class_heatmaps(maps, classes)
  for n, cls in enumerate(classes):
    np.testing.assert_array_equal(heat[n], maps[n, :, :, cls])
    assert heat[n].mean() == pytest.approx(logits[n, cls], abs=1e-5)


def test_top_patches_are_the_largest_evidence():
  maps = np.random.default_rng(2).normal(size=(6, 4, 4, 3))
  tops = visualize.top_patches(maps, 1, 5)
  values = sorted(maps[..., 1].ravel(), reverse=True)[:5]
  assert [t[3] for t in tops] == pytest.approx(values)
  for index, i, j, value in tops:
    assert maps[index, i, j, 1] == value


def test_patch_boxes():
  assert visualize.patch_box(2, 3, (8, 8), 0) == (8, 12, 12, 16)  # one cell
  assert visualize.patch_box(0, 7, (8, 8), 9) == (0, 23, 9, 32)  # clipped


def test_models_without_patch_logits_or_not_averaging_are_refused():
  with pytest.raises(UserError, match="no|none"):
    visualize.patch_logits_model(tiny_cnn())
  maps = np.ones((2, 4, 4, 10))
  with pytest.raises(UserError, match="differs from the model's logits"):
    visualize.check_bagnet_contract(maps, np.zeros((2, 10)))


def test_heatmaps_of_a_bagnet_run(tmp_path, tiny_run):
  # A run directory holding a BagNet-like model.keras (no bagnet model is
  # registered yet): the run's config and status, another model.
  run = tmp_path / "bagnet_run"
  run.mkdir()
  for name in ("config.json", "status.json"):
    (run / name).write_text(open(os.path.join(tiny_run, name)).read())
  tiny_bagnet().save(str(run / "model.keras"))
  heatmaps, tops = visualize.heatmaps_run(str(run), [0, 1, 2], top_count=4)
  assert heatmaps == str(run / "evaluation" / "heatmaps.png")
  assert os.path.getsize(heatmaps) > 0 and os.path.getsize(tops) > 0
  assert json.loads((run / "status.json").read_text())["status"] == "finished"
  with pytest.raises(UserError, match="patch_logits"):
    visualize.heatmaps_run(tiny_run, [0])
