r"""Evaluates a trained run: loss, accuracy, top-5, per class, confusion matrix.

  python -m tfcifar.evaluate --model_dir=runs/aug [--split=test|train]

Loads the run's model (model.keras, or the latest checkpoint of an unfinished
run) and runs it in inference mode over the run's own split (its corruption,
normalization and example limit; no augmentation). Writes to
RUN/evaluation/<split>/:

  summary.json           loss, <split>_accuracy, top5_accuracy, per-class
                         accuracy, mean_confidence and
                         expected_calibration_error (Guo et al. 2017), and
                         on a label-corruption run's train split the
                         memorisation split (below)
  confusion_matrix.csv   `true\predicted,airplane,...,truck`, then one row of
                         counts per true class, starting with its name
  confusion_matrix.png   row-normalised, annotated, class names on both axes
  events.out.tfevents.*  the same figure as a TensorBoard image

Memorisation (`--corrupt=labels` runs, `--split=train`): accuracy against the
corrupted labels the network was trained on and against the true ones,
separately for the examples whose label was changed and those whose label was
kept (a label redrawn as itself counts as kept). Accuracy on changed examples
against their corrupted labels is the noise the network memorised.
"""

import tfcifar  # noqa: F401  (first: quiets TensorFlow's start-up lines)

import csv
import io
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
SPLITS = ("test", "train")
TOP_K = 5
ECE_BINS = 15  # Guo et al. 2017's number of confidence bins


# --- the maths (pure functions) ---------------------------------------------


def confusion_matrix(labels, predictions, num_classes):
  """Counts [true class, predicted class] as int64 [K, K]."""
  return tf.math.confusion_matrix(labels, predictions, num_classes=num_classes,
                                  dtype=tf.int64).numpy()


def top_k_accuracy(logits, labels, k=TOP_K):
  """Fraction of examples whose label is among the k largest logits."""
  hits = keras.ops.in_top_k(keras.ops.convert_to_tensor(labels, "int32"),
                            keras.ops.convert_to_tensor(logits, "float32"), k)
  return float(np.mean(keras.ops.convert_to_numpy(hits)))


def mean_cross_entropy(logits, labels):
  """Mean sparse cross-entropy of `logits` (the trainer's loss, no decay)."""
  losses = keras.losses.sparse_categorical_crossentropy(
      labels, keras.ops.convert_to_tensor(logits, "float32"), from_logits=True)
  return float(keras.ops.mean(losses))


def calibration(logits, labels, bins=ECE_BINS):
  """(mean confidence, expected calibration error) of softmax predictions.

  Confidence is the largest softmax probability. ECE as Guo et al. 2017,
  "On Calibration of Modern Neural Networks", Section 2 (Eq. 3): the
  predictions are split into `bins` equal-width confidence bins (0, 1/M],
  (1/M, 2/M], ...; ECE = sum over bins of |B|/n * |acc(B) - conf(B)|. Label
  smoothing lowers confidence (Mueller et al. 2019); an overconfident network
  has confidence above its accuracy.
  """
  probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(
      keras.ops.convert_to_tensor(logits, "float64")))
  confidence = probabilities.max(axis=-1)
  correct = probabilities.argmax(axis=-1) == np.asarray(labels)
  which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
  ece = 0.0
  for b in range(bins):
    in_bin = which == b
    if in_bin.any():
      ece += in_bin.mean() * abs(correct[in_bin].mean() -
                                 confidence[in_bin].mean())
  return float(confidence.mean()), float(ece)


def per_class_accuracy(matrix):
  """Recall of each true class (diagonal / row sum); None for empty rows."""
  matrix = np.asarray(matrix)
  totals = matrix.sum(axis=1)
  return [float(matrix[i, i] / totals[i]) if totals[i] else None
          for i in range(len(matrix))]


def _accuracy(predictions, labels):
  return float(np.mean(predictions == labels)) if len(labels) else None


def memorisation_split(predictions, corrupted_labels, true_labels):
  """Accuracy vs corrupted and vs true labels, for changed and kept examples.

  Returns {"changed": {...}, "kept": {...}}, each with `examples`,
  `accuracy_vs_corrupted_labels` and `accuracy_vs_true_labels` (None for
  an empty group), and `changed_fraction`.
  """
  predictions, corrupted, true = (np.asarray(a) for a in (
      predictions, corrupted_labels, true_labels))
  changed = corrupted != true
  result = {"changed_fraction": float(changed.mean())}
  for name, mask in (("changed", changed), ("kept", ~changed)):
    result[name] = {
        "examples": int(mask.sum()),
        "accuracy_vs_corrupted_labels": _accuracy(predictions[mask],
                                                  corrupted[mask]),
        "accuracy_vs_true_labels": _accuracy(predictions[mask], true[mask]),
    }
  return result


def summarize(logits, labels, class_names, split):
  """The summary dict of one split's predictions (without memorisation)."""
  matrix = confusion_matrix(labels, np.argmax(logits, -1), len(class_names))
  confidence, ece = calibration(logits, labels)
  return {
      "split": split,
      "examples": int(len(labels)),
      "loss": mean_cross_entropy(logits, labels),
      f"{split}_accuracy": float(np.trace(matrix) / matrix.sum()),
      "top5_accuracy": top_k_accuracy(logits, labels, TOP_K),
      "mean_confidence": confidence,
      "expected_calibration_error": ece,
      "per_class_accuracy": dict(zip(class_names,
                                     per_class_accuracy(matrix))),
  }, matrix


# --- outputs -----------------------------------------------------------------


def confusion_csv(matrix, class_names):
  r"""`true\predicted,<names>` then `<true name>,<counts>` per row."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["true\\predicted", *class_names])
  for name, row in zip(class_names, np.asarray(matrix)):
    writer.writerow([name, *(int(v) for v in row)])
  return out.getvalue()


def row_normalised(matrix):
  """Each row divided by its sum (rows without examples stay 0)."""
  matrix = np.asarray(matrix, np.float64)
  totals = matrix.sum(axis=1, keepdims=True)
  return np.divide(matrix, totals, out=np.zeros_like(matrix),
                   where=totals > 0)


def confusion_figure(matrix, class_names, title):
  """The row-normalised confusion matrix, annotated, as a matplotlib Figure."""
  from matplotlib import figure as figure_lib  # pylint: disable=g-import-not-at-top
  fractions = row_normalised(matrix)
  size = 1.5 + 0.6 * len(class_names)
  fig = figure_lib.Figure(figsize=(size + 1.0, size), layout="constrained")
  ax = fig.add_subplot()
  image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
  ticks = np.arange(len(class_names))
  ax.set_xticks(ticks, class_names, rotation=45, ha="right")
  ax.set_yticks(ticks, class_names)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(title)
  for (i, j), value in np.ndenumerate(fractions):
    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
            color="white" if value > 0.5 else "black")
  fig.colorbar(image, ax=ax, label="fraction of the true class")
  return fig


def figure_png(fig):
  """PNG bytes of a matplotlib Figure."""
  out = io.BytesIO()
  fig.savefig(out, format="png", dpi=100)
  return out.getvalue()


def log_image(log_dir, tag, png, step, description):
  """Writes PNG bytes as one TensorBoard image summary."""
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default(step=step):
    tf.summary.image(tag, tf.image.decode_png(png)[None], max_outputs=1,
                     description=description)
  writer.close()


def write_outputs(out_dir, summary, matrix, class_names, step):
  """summary.json, confusion_matrix.csv/.png and the TensorBoard image."""
  split = summary["split"]
  cli.write_json(os.path.join(out_dir, "summary.json"), summary)
  cli.write_text(os.path.join(out_dir, "confusion_matrix.csv"),
                 confusion_csv(matrix, class_names))
  title = (f"{split}: accuracy {summary[f'{split}_accuracy']:.3f} "
           f"({summary['examples']} images)")
  fig = confusion_figure(matrix, class_names, title)
  cli.save_figure(fig, os.path.join(out_dir, "confusion_matrix.png"))
  log_image(out_dir, f"confusion_matrix/{split}", figure_png(fig), step,
            "Row-normalised confusion matrix (rows: true class).")


# --- the command -------------------------------------------------------------


def evaluate_run(model_dir, split="test", data_dir=None, batch_size=256,
                 limit=None):
  """Evaluates the run in `model_dir`; returns (summary, output directory)."""
  if split not in SPLITS:
    raise UserError(f"--split={split!r}: choose one of {', '.join(SPLITS)}")
  config = saved_run.load_run_config(model_dir)
  model, source, epoch = saved_run.load_model(model_dir, config)
  logits, labels = saved_run.predict(model, saved_run.dataset(
      config, split, data_dir, batch_size, limit))
  names = saved_run.class_names(config, data_dir)
  summary, matrix = summarize(logits, labels, names, split)
  summary.update(model=source, epoch=epoch)
  if split == "train" and saved_run.is_label_corruption(config):
    summary["memorisation"] = memorisation_split(
        np.argmax(logits, -1), labels,
        saved_run.true_labels(config, split, data_dir, limit))
  out_dir = saved_run.evaluation_dir(model_dir, split)
  write_outputs(out_dir, summary, matrix, names, epoch or 0)
  return summary, out_dir


def define_flags():
  config_lib.define_path_flag("model_dir", "", "Run directory of python -m "
                              "tfcifar.train.")
  flags.DEFINE_enum("split", "test", list(SPLITS), "Split to evaluate.")
  config_lib.define_path_flag("data_dir", "", "Converted CIFAR-10 (default: the "
                              "run's own data_dir).")
  flags.DEFINE_integer("batch_size", 256, "Images per inference batch.")
  flags.DEFINE_integer("max_examples", 0, "Evaluate at most the first N "
                       "examples of the run's split (0 = all of them).")


def main(argv):
  del argv
  if FLAGS.batch_size < 1 or FLAGS.max_examples < 0:
    raise UserError("--batch_size must be positive and --max_examples >= 0")
  summary, out_dir = evaluate_run(FLAGS.model_dir, FLAGS.split,
                                  FLAGS.data_dir or None, FLAGS.batch_size,
                                  FLAGS.max_examples or None)
  split = summary["split"]
  line = (f"{split}_accuracy={summary[f'{split}_accuracy']:.4f} "
          f"top5_accuracy={summary['top5_accuracy']:.4f} "
          f"loss={summary['loss']:.4f} "
          f"confidence={summary['mean_confidence']:.4f} "
          f"ece={summary['expected_calibration_error']:.4f}")
  if "memorisation" in summary:
    changed = summary["memorisation"]["changed"]
    line += (f" changed-label examples fit: "
             f"{changed['accuracy_vs_corrupted_labels']}")
  print(f"{line} ({summary['examples']} images, {summary['model']}) -> "
        f"{out_dir}")


def entry_point():
  cli.run(define_flags, main)


if __name__ == "__main__":
  entry_point()
