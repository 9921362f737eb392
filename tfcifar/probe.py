r"""The texture-bias probe: test accuracy when image patches are shuffled.

  python -m tfcifar.probe --model_dir=runs/aug --patch_sizes=4,8,16
  python -m tfcifar.probe --model_dir=runs/vgg --model_dir=runs/bagnet \
      --out=patch_shuffle.png

Each test image is cut into a grid of k x k patches, which are randomly
permuted (every patch kept intact, a new permutation per image, seeded by
--seed); the run's model classifies the result. A network that decides from
small local features (a bag of patches, like BagNet) keeps its accuracy for
small k; one that needs the global shape does not. k = 32 is the intact image
and is always measured.

Writes RUN/evaluation/patch_shuffle.csv (`patch_size,accuracy`) and a figure
of accuracy against k: RUN/evaluation/patch_shuffle.png for one run, or one
figure comparing several runs (--out, default patch_shuffle_comparison.png).

The shuffle is applied to the network's inputs (after the run's per-channel
normalization, which commutes with moving pixels).
"""

import tfcifar  # noqa: F401  (first: quiets TensorFlow's start-up lines)

import csv
import io
import os

import numpy as np
from absl import flags

from tfcifar import cli
from tfcifar import saved_run
from tfcifar.errors import UserError
from tfcifar import config as config_lib

FLAGS = flags.FLAGS
IMAGE_SIZE = 32
INTACT = IMAGE_SIZE
CSV_FILENAME = "patch_shuffle.csv"
FIGURE_FILENAME = "patch_shuffle.png"
COMPARISON_FILENAME = "patch_shuffle_comparison.png"


# --- the maths (pure functions) ---------------------------------------------


def to_patches(images, patch_size):
  """[N, H, W, C] -> [N, (H/k)*(W/k), k, k, C], patches in row-major order."""
  n, h, w, c = images.shape
  k = patch_size
  grid = images.reshape(n, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5)
  return grid.reshape(n, (h // k) * (w // k), k, k, c)


def from_patches(patches, height, width):
  """The inverse of `to_patches`."""
  n, _, k, _, c = patches.shape
  grid = patches.reshape(n, height // k, width // k, k, k, c)
  return grid.transpose(0, 1, 3, 2, 4, 5).reshape(n, height, width, c)


def check_patch_size(patch_size, height=IMAGE_SIZE, width=IMAGE_SIZE):
  if patch_size < 1 or height % patch_size or width % patch_size:
    divisors = [k for k in range(1, min(height, width) + 1)
                if height % k == 0 and width % k == 0]
    raise UserError(f"--patch_sizes: {patch_size} does not tile a "
                    f"{height}x{width} image; use one of "
                    f"{', '.join(map(str, divisors))}")


def shuffle_patches(images, patch_size, seed=0):
  """Images with their k x k patches randomly permuted, per image.

  Args:
    images: array [N, H, W, C]; H and W divisible by `patch_size`.
    patch_size: k. k = H = W leaves every image as it is.
    seed: seeds the permutations (one per image, independent).
  """
  images = np.asarray(images)
  _, height, width, _ = images.shape
  check_patch_size(patch_size, height, width)
  patches = to_patches(images, patch_size)
  count = patches.shape[1]
  order = np.random.default_rng(seed).permuted(
      np.tile(np.arange(count), (len(images), 1)), axis=1)
  shuffled = np.take_along_axis(patches, order[:, :, None, None, None], axis=1)
  return from_patches(shuffled, height, width)


def patch_shuffle_accuracies(predict_fn, images, labels, patch_sizes, seed=0):
  """[(k, accuracy)] for each patch size (ascending, 32 = intact included).

  `predict_fn(images) -> logits` classifies an array of network inputs.
  """
  sizes = sorted(set(patch_sizes) | {images.shape[1]})
  rows = []
  for k in sizes:
    logits = predict_fn(shuffle_patches(images, k, seed))
    rows.append((k, float(np.mean(np.argmax(logits, -1) == labels))))
  return rows


# --- outputs -----------------------------------------------------------------


def probe_csv(rows):
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["patch_size", "accuracy"])
  writer.writerows((k, f"{accuracy:.6g}") for k, accuracy in rows)
  return out.getvalue()


def probe_figure(results):
  """Accuracy against patch size, one line per run: {label: [(k, acc)]}."""
  from matplotlib import figure as figure_lib  # pylint: disable=g-import-not-at-top
  fig = figure_lib.Figure(figsize=(6, 4), layout="constrained")
  ax = fig.add_subplot()
  sizes = sorted({k for rows in results.values() for k, _ in rows})
  for label, rows in results.items():
    ax.plot([k for k, _ in rows], [a for _, a in rows], marker="o",
            label=label)
  ax.axhline(0.1, color="gray", linestyle=":", label="chance")
  ax.set_xscale("log", base=2)
  ax.set_xticks(sizes, [f"{k}" + (" (intact)" if k == INTACT else "")
                        for k in sizes])
  ax.set_ylim(0, 1)
  ax.set_xlabel("patch size k (pixels): k x k patches shuffled")
  ax.set_ylabel("test accuracy")
  ax.set_title("Patch-shuffle texture probe")
  ax.legend()
  return fig


# --- the command -------------------------------------------------------------


def probe_run(model_dir, patch_sizes, seed=0, data_dir=None, limit=None,
              batch_size=256):
  """Runs the probe on one run and writes its CSV; returns the rows."""
  config = saved_run.load_run_config(model_dir)
  model, _, _ = saved_run.load_model(model_dir, config)
  images, labels = saved_run.split_arrays(config, "test", data_dir, limit,
                                          batch_size)

  def predict_fn(inputs):
    return saved_run.predict(model, saved_run.batches(inputs, labels,
                                                      batch_size))[0]

  rows = patch_shuffle_accuracies(predict_fn, images, labels, patch_sizes,
                                  seed)
  cli.write_text(os.path.join(saved_run.evaluation_dir(model_dir),
                              CSV_FILENAME), probe_csv(rows))
  return rows


def run_labels(model_dirs):
  """Short legend labels: the directory names, or the paths if they clash."""
  names = [os.path.basename(os.path.normpath(d)) for d in model_dirs]
  return names if len(set(names)) == len(names) else list(model_dirs)


def define_flags():
  config_lib.define_path_flag("model_dir", [], "Run directory; repeat it to "
                              "compare several runs in one figure.",
                              multi=True)
  flags.DEFINE_string("patch_sizes", "4,8,16", "Patch sizes k (divisors of "
                      "32); 32, the intact image, is always added.")
  flags.DEFINE_integer("seed", 0, "Seed of the patch permutations.")
  config_lib.define_path_flag("data_dir", "", "Converted CIFAR-10 (default: each "
                              "run's own data_dir).")
  flags.DEFINE_integer("max_examples", 0, "Use at most the first N test "
                       "examples of each run (0 = all of them).")
  flags.DEFINE_integer("batch_size", 256, "Images per inference batch.")
  config_lib.define_path_flag("out", "", "Figure path (default: RUN/evaluation/"
                              f"{FIGURE_FILENAME} for one run, "
                              f"./{COMPARISON_FILENAME} for several).")


def main(argv):
  del argv
  model_dirs = FLAGS.model_dir or [""]
  sizes = cli.parse_int_list(FLAGS.patch_sizes, "--patch_sizes")
  for k in sizes:
    check_patch_size(k)
  if FLAGS.batch_size < 1 or FLAGS.max_examples < 0 or FLAGS.seed < 0:
    raise UserError("--batch_size must be positive, --max_examples and "
                    "--seed >= 0")
  for model_dir in model_dirs:  # every run directory checked before any work
    saved_run.load_run_config(model_dir)
  results = {}
  for label, model_dir in zip(run_labels(model_dirs), model_dirs):
    results[label] = probe_run(model_dir, sizes, FLAGS.seed,
                               FLAGS.data_dir or None,
                               FLAGS.max_examples or None, FLAGS.batch_size)
    print(f"{model_dir}: " + " ".join(f"k={k}:{a:.4f}"
                                      for k, a in results[label]))
  out = FLAGS.out or (
      os.path.join(saved_run.evaluation_dir(model_dirs[0]), FIGURE_FILENAME)
      if len(model_dirs) == 1 else COMPARISON_FILENAME)
  cli.save_figure(probe_figure(results), out)
  print(f"figure: {out}")


def entry_point():
  cli.run(define_flags, main)


if __name__ == "__main__":
  entry_point()
