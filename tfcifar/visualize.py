r"""What a trained network looks for: activation maximisation, BagNet heatmaps.

  python -m tfcifar.visualize --model_dir=runs/aug --layer=conv3_1 \
      --units=0-15 --out=conv3_1.png
  python -m tfcifar.visualize --model_dir=runs/bagnet --heatmaps --images=0-7

Activation maximisation: from noise, gradient ascent on the input image to
maximise each unit's mean activation (a conv channel averaged over positions,
or a dense unit), in inference mode, with restraint so the images stay images:
a bounded number of --steps, a random jitter (roll by up to --jitter pixels)
before each step, a Gaussian blur every --blur_every steps, an L2 penalty
(--l2) on the input, and pixels kept within 0..255. Steps are normalised
gradients (mean |step| = --step_size, in units of the input's standard
deviation). The grid (one image per unit, titled with its number) goes to
--out, default RUN/evaluation/activation_max_<layer>.png.

Heatmaps (--heatmaps), for BagNet runs. The contract a model meets:

  it has a layer named `patch_logits` whose output is [B, H', W', classes]:
  the class evidence (logits) of the image patch seen at each location, and
  the model's logits are the mean of `patch_logits` over the H' x W'
  locations.

Location (i, j) is drawn over the input patch of --patch_size pixels centred
on the (i, j) cell of an H' x W' grid over the image (default size: one
cell). Writes RUN/evaluation/heatmaps.png, or --out (for each of the
--images test images: the image, the evidence for its true class and for the
predicted class), and next to it heatmaps_top_patches.png (for each class,
the --top_patches patches of the test set with the most evidence for it). A
model without a `patch_logits` layer is a one-line error; so is one whose
spatial mean of `patch_logits` is not its logits.
"""

import tfcifar  # noqa: F401  (first: quiets TensorFlow's start-up lines)

import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from tfcifar import cli
from tfcifar import saved_run
from tfcifar.errors import UserError
from tfcifar import config as config_lib

FLAGS = flags.FLAGS
PATCH_LOGITS_LAYER = "patch_logits"
_BLUR_KERNEL = (0.25, 0.5, 0.25)  # separable 3x3 Gaussian-like blur


# --- activation maximisation (pure functions) --------------------------------


def _inputs(model):
  return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def layer_names(model):
  return [layer.name for layer in model.layers]


def feature_model(model, layer_name):
  """keras.Model(inputs -> the output of `layer_name`); UserError if none."""
  try:
    layer = model.get_layer(layer_name)
  except ValueError:
    raise UserError(f"--layer={layer_name!r} is not a layer of the model "
                    f"{model.name!r}; its layers: "
                    f"{', '.join(layer_names(model))}") from None
  if len(layer.output.shape) not in (2, 4):
    raise UserError(f"--layer={layer_name} has output shape "
                    f"{tuple(layer.output.shape)}; choose a conv (B, H, W, C) "
                    "or dense (B, C) layer")
  return keras.Model(_inputs(model), layer.output,
                     name=f"{layer_name}_features")


def num_units(features):
  """Units (channels) of a feature model's output."""
  return int(features.output.shape[-1])


def unit_activations(features, images, units):
  """[U]: for image u, the mean activation of unit units[u] (over positions)."""
  values = features(images, training=False)
  if len(values.shape) == 4:
    values = keras.ops.mean(values, axis=(1, 2))
  picked = keras.ops.one_hot(keras.ops.convert_to_tensor(units, "int32"),
                             values.shape[-1], dtype=values.dtype)
  return keras.ops.sum(values * picked, axis=-1)


def blur(images):
  """A 3x3 separable blur of [N, H, W, C] images (reflect padding)."""
  channels = images.shape[-1]
  kernel = np.outer(_BLUR_KERNEL, _BLUR_KERNEL).astype(np.float32)
  kernel = np.tile(kernel[:, :, None, None], (1, 1, channels, 1))
  padded = keras.ops.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)],
                         mode="reflect")
  return keras.ops.depthwise_conv(padded, kernel, padding="valid")


def noise_images(count, low, high, seed=0, image_shape=(32, 32, 3)):
  """Uniform noise in the middle half of [low, high] per channel."""
  low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
  span = high - low
  rng = np.random.default_rng(seed)
  return (low + span * rng.uniform(0.375, 0.625, (count, *image_shape))
          ).astype(np.float32)


def make_ascent_step(features, units, step_size, l2, low, high):
  """One compiled step: jittered gradient ascent, normalised, clipped."""
  units = tf.constant(units, tf.int32)
  low, high = tf.constant(low, tf.float32), tf.constant(high, tf.float32)

  @tf.function
  def step(images, shift):
    with tf.GradientTape() as tape:
      tape.watch(images)
      rolled = tf.roll(images, shift, axis=(1, 2))
      objective = unit_activations(features, rolled, units)
      penalty = l2 * keras.ops.mean(keras.ops.square(images), axis=(1, 2, 3))
      total = keras.ops.sum(objective - penalty)
    grads = tape.gradient(total, images)
    scale = keras.ops.mean(keras.ops.abs(grads), axis=(1, 2, 3),
                           keepdims=True) + 1e-8
    return keras.ops.clip(images + step_size * grads / scale, low, high)

  return step


def maximize_activation(features, units, start, steps=128, step_size=0.1,
                        jitter=2, blur_every=8, l2=1e-3, low=-np.inf,
                        high=np.inf, seed=0):
  """Images [U, H, W, C] maximising units[u]'s mean activation in image u.

  Starts from `start` ([U, H, W, C] inputs); `low`/`high` (per channel) bound
  the inputs. Returns the final images as a numpy array.
  """
  if len(start) != len(units):
    raise ValueError(f"{len(start)} start images for {len(units)} units")
  step = make_ascent_step(features, list(units), float(step_size), float(l2),
                          np.broadcast_to(low, (3,)), np.broadcast_to(high,
                                                                      (3,)))
  rng = np.random.default_rng(seed)
  images = tf.constant(start, tf.float32)
  for i in range(int(steps)):
    shift = rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)
    images = step(images, tf.constant(shift, tf.int32))
    if blur_every and (i + 1) % blur_every == 0:
      images = keras.ops.clip(blur(images), low, high)
  return keras.ops.convert_to_numpy(images)


def to_pixels(inputs, mean, std):
  """Network inputs -> uint8 pixels (inputs * std + mean, rounded, clipped)."""
  return np.clip(np.rint(np.asarray(inputs) * std + mean), 0, 255).astype(
      np.uint8)


# --- BagNet heatmaps (pure functions) ----------------------------------------


def patch_logits_model(model):
  """keras.Model(inputs -> [patch logits [B, H', W', K], logits [B, K]])."""
  try:
    layer = model.get_layer(PATCH_LOGITS_LAYER)
  except ValueError:
    raise UserError(f"--heatmaps needs a BagNet-style model with a "
                    f"'{PATCH_LOGITS_LAYER}' layer (per-location logits whose "
                    f"spatial mean is the logits); model {model.name!r} has "
                    "none") from None
  if len(layer.output.shape) != 4:
    raise UserError(f"layer '{PATCH_LOGITS_LAYER}' has output shape "
                    f"{tuple(layer.output.shape)}, not (B, H, W, classes)")
  return keras.Model(_inputs(model), [layer.output, model.outputs[0]])


def patch_logit_maps(maps_model, images, batch_size=256):
  """(patch logits [N, H', W', K], logits [N, K]) of `images`, as numpy."""
  maps, logits = [], []
  for start in range(0, len(images), batch_size):
    batch_maps, batch_logits = maps_model.predict_on_batch(
        images[start:start + batch_size])
    maps.append(np.asarray(batch_maps, np.float32))
    logits.append(np.asarray(batch_logits, np.float32))
  return np.concatenate(maps), np.concatenate(logits)


def check_bagnet_contract(maps, logits, atol=1e-3):
  """UserError unless the spatial mean of the patch logits is the logits."""
  gap = float(np.max(np.abs(maps.mean(axis=(1, 2)) - logits), initial=0.0))
  if gap > atol * max(1.0, float(np.abs(logits).max(initial=0.0))):
    raise UserError(f"the spatial mean of layer '{PATCH_LOGITS_LAYER}' differs "
                    f"from the model's logits by {gap:.3g}; the heatmaps "
                    "would not explain its decisions")


def class_heatmaps(maps, classes):
  """[N, H', W']: map n's evidence for class classes[n]."""
  classes = np.asarray(classes)
  return np.take_along_axis(maps, classes[:, None, None, None], axis=-1)[..., 0]


def top_patches(maps, cls, count):
  """The `count` (image, i, j, evidence) locations with most evidence for
  class `cls` over all images, highest first."""
  evidence = maps[..., cls]
  order = np.argsort(evidence, axis=None)[::-1][:count]
  return [(*(int(v) for v in np.unravel_index(index, evidence.shape)),
           float(evidence.flat[index])) for index in order]


def patch_box(i, j, grid_shape, patch_size, image_size=32):
  """(top, left, bottom, right) pixels of location (i, j)'s patch, clipped."""
  cell = image_size / grid_shape[0], image_size / grid_shape[1]
  size = patch_size or max(1, round(cell[0]))
  boxes = []
  for index, cell_size in ((i, cell[0]), (j, cell[1])):
    centre = (index + 0.5) * cell_size
    first = int(np.clip(round(centre - size / 2), 0, image_size - size))
    boxes.append((first, first + size))
  (top, bottom), (left, right) = boxes
  return top, left, bottom, right


# --- figures -----------------------------------------------------------------


def _grid_figure(count, cols, cell=1.6, extra_height=0.0):
  from matplotlib import figure as figure_lib  # pylint: disable=g-import-not-at-top
  rows = math.ceil(count / cols)
  fig = figure_lib.Figure(figsize=(cols * cell, rows * cell + extra_height),
                          layout="constrained")
  axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
  for ax in axes.ravel():
    ax.axis("off")
  return fig, axes


def activation_grid_figure(pixels, units, layer, activations):
  """One image per unit, titled `unit N` (and its final activation)."""
  cols = math.ceil(math.sqrt(len(units)))
  fig, axes = _grid_figure(len(units), cols, extra_height=0.4)
  for ax, image, unit, value in zip(axes.ravel(), pixels, units, activations):
    ax.imshow(image, interpolation="nearest")
    ax.set_title(f"unit {unit}\n{value:.3g}", fontsize=8)
  fig.suptitle(f"activation maximisation: {layer}")
  return fig


def heatmap_figure(pixels, true_maps, pred_maps, labels, predictions, names):
  """Per image: the image, evidence for the true and the predicted class."""
  fig, axes = _grid_figure(3 * len(pixels), 3, cell=1.8)
  for row, (image, true_map, pred_map, label, pred) in enumerate(zip(
      pixels, true_maps, pred_maps, labels, predictions)):
    axes[row, 0].imshow(image, interpolation="nearest")
    axes[row, 0].set_title(f"true {names[label]}", fontsize=8)
    limit = max(np.abs(true_map).max(), np.abs(pred_map).max(), 1e-6)
    for col, (heat, cls) in enumerate(((true_map, label), (pred_map, pred)),
                                      start=1):
      axes[row, col].imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit)
      axes[row, col].set_title(
          f"{'true' if col == 1 else 'predicted'}: {names[cls]}", fontsize=8)
  return fig


def top_patches_figure(pixels, tops, grid_shape, patch_size, names):
  """One row per class: its most informative patches."""
  cols = max(len(t) for t in tops)
  fig, axes = _grid_figure(len(tops) * cols, cols, cell=1.0)
  for cls, locations in enumerate(tops):
    for col, (index, i, j, value) in enumerate(locations):
      top, left, bottom, right = patch_box(i, j, grid_shape, patch_size,
                                           pixels.shape[1])
      ax = axes[cls, col]
      ax.imshow(pixels[index, top:bottom, left:right],
                interpolation="nearest")
      ax.set_title(f"{names[cls]} {value:.2g}" if col == 0 else f"{value:.2g}",
                   fontsize=6)
  return fig


# --- the commands ------------------------------------------------------------


def _load(model_dir, data_dir):
  config = saved_run.load_run_config(model_dir)
  model, _, _ = saved_run.load_model(model_dir, config)
  mean, std = saved_run.pixel_stats(config, data_dir)
  return config, model, mean, std


def activation_max_run(model_dir, layer, units, out=None, steps=128,
                       step_size=0.1, jitter=2, blur_every=8, l2=1e-3,
                       seed=0, data_dir=None):
  """Draws the units' maximising images; returns (out, start, final acts)."""
  _, model, mean, std = _load(model_dir, data_dir)
  features = feature_model(model, layer)
  available = num_units(features)
  if max(units) >= available:
    raise UserError(f"--units: layer {layer} has {available} units "
                    f"(0-{available - 1})")
  low, high = (0.0 - mean) / std, (255.0 - mean) / std
  start = noise_images(len(units), low, high, seed)
  images = maximize_activation(features, units, start, steps, step_size,
                               jitter, blur_every, l2, low, high, seed)
  final = keras.ops.convert_to_numpy(unit_activations(features, images, units))
  out = out or os.path.join(saved_run.evaluation_dir(model_dir),
                            f"activation_max_{layer}.png")
  cli.save_figure(activation_grid_figure(to_pixels(images, mean, std), units,
                                         layer, final), out)
  initial = keras.ops.convert_to_numpy(
      unit_activations(features, start, units))
  return out, initial, final


def heatmaps_run(model_dir, image_indices, out=None, top_count=8,
                 patch_size=0, data_dir=None, limit=None):
  """BagNet heatmaps and top patches; returns the two figure paths."""
  config, model, mean, std = _load(model_dir, data_dir)
  maps_model = patch_logits_model(model)
  images, labels = saved_run.split_arrays(config, "test", data_dir, limit)
  if max(image_indices) >= len(images):
    raise UserError(f"--images: the run's test split has {len(images)} images "
                    f"(0-{len(images) - 1})")
  maps, logits = patch_logit_maps(maps_model, images)
  check_bagnet_contract(maps, logits)
  names = saved_run.class_names(config, data_dir)
  chosen = np.asarray(image_indices)
  predictions = np.argmax(logits, -1)
  pixels = to_pixels(images, mean, std)
  out = out or os.path.join(saved_run.evaluation_dir(model_dir),
                            "heatmaps.png")
  tops_out = f"{os.path.splitext(out)[0]}_top_patches.png"
  cli.save_figure(heatmap_figure(
      pixels[chosen], class_heatmaps(maps[chosen], labels[chosen]),
      class_heatmaps(maps[chosen], predictions[chosen]), labels[chosen],
      predictions[chosen], names), out)
  tops = [top_patches(maps, cls, top_count) for cls in range(maps.shape[-1])]
  cli.save_figure(top_patches_figure(pixels, tops, maps.shape[1:3],
                                     patch_size, names), tops_out)
  return out, tops_out


def define_flags():
  config_lib.define_path_flag("model_dir", "", "Run directory of python -m "
                              "tfcifar.train.")
  flags.DEFINE_string("layer", "", "Layer whose units are maximised.")
  flags.DEFINE_string("units", "0-15", "Units (channels): ranges and numbers, "
                      "e.g. 0-15 or 0,3,7.")
  config_lib.define_path_flag("out", "", "Output PNG (default: under "
                              "RUN/evaluation/).")
  flags.DEFINE_integer("steps", 128, "Gradient ascent steps.")
  flags.DEFINE_float("step_size", 0.1, "Mean |change| of an input per step "
                     "(input standard deviations).")
  flags.DEFINE_integer("jitter", 2, "Random roll of up to this many pixels "
                       "before each step (0: none).")
  flags.DEFINE_integer("blur_every", 8, "Blur the images every N steps "
                       "(0: never).")
  flags.DEFINE_float("l2", 1e-3, "L2 penalty on the input, per image.")
  flags.DEFINE_integer("seed", 0, "Seed of the noise and the jitter.")
  flags.DEFINE_boolean("heatmaps", False, "BagNet runs: per-location class "
                       "evidence and the most informative patches.")
  flags.DEFINE_string("images", "0-7", "--heatmaps: test images to draw.")
  flags.DEFINE_integer("top_patches", 8, "--heatmaps: patches per class.")
  flags.DEFINE_integer("patch_size", 0, "--heatmaps: patch size in pixels "
                       "(0: one cell of the location grid).")
  flags.DEFINE_integer("max_examples", 0, "--heatmaps: at most the first N "
                       "test examples (0 = the run's test split).")
  config_lib.define_path_flag("data_dir", "", "Converted CIFAR-10 (default: the "
                              "run's own data_dir).")


def _check_flags():
  if FLAGS.steps < 1 or FLAGS.steps > 10000:
    raise UserError(f"--steps={FLAGS.steps} must be in 1..10000")
  if min(FLAGS.jitter, FLAGS.blur_every, FLAGS.top_patches - 1,
         FLAGS.patch_size, FLAGS.max_examples, FLAGS.seed) < 0:
    raise UserError("--jitter, --blur_every, --patch_size, --max_examples and "
                    "--seed must be >= 0, --top_patches >= 1")
  if not FLAGS.step_size > 0 or FLAGS.l2 < 0:
    raise UserError("--step_size must be positive and --l2 >= 0")


def main(argv):
  del argv
  _check_flags()
  saved_run.load_run_config(FLAGS.model_dir)  # a bad run dir first
  if FLAGS.heatmaps:
    paths = heatmaps_run(FLAGS.model_dir,
                         cli.parse_int_list(FLAGS.images, "--images"),
                         FLAGS.out or None, FLAGS.top_patches,
                         FLAGS.patch_size, FLAGS.data_dir or None,
                         FLAGS.max_examples or None)
    print(f"heatmaps: {paths[0]}; top patches: {paths[1]}")
    return
  if not FLAGS.layer:
    raise UserError("--layer is required (or --heatmaps)")
  units = cli.parse_int_list(FLAGS.units, "--units")
  out, initial, final = activation_max_run(
      FLAGS.model_dir, FLAGS.layer, units, FLAGS.out or None, FLAGS.steps,
      FLAGS.step_size, FLAGS.jitter, FLAGS.blur_every, FLAGS.l2, FLAGS.seed,
      FLAGS.data_dir or None)
  print(f"{FLAGS.layer} units {FLAGS.units}: mean activation "
        f"{np.mean(initial):.4g} on the starting noise -> {np.mean(final):.4g}"
        f" after {FLAGS.steps} steps; grid: {out}")


def entry_point():
  cli.run(define_flags, main)


if __name__ == "__main__":
  entry_point()
