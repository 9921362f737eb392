"""What a run shows: TensorBoard summaries, the progress bar, the epoch lines.

Train scalars go to `<model_dir>/train`, test scalars to `<model_dir>/test`,
both under the tags `loss` and `accuracy`, so TensorBoard draws train and
test on one chart. Only the chief writes; other workers get a no-op logger.
"""

import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfcifar import models


def image_grid(images, max_images=64):
  """Tiles uint8 images [N, H, W, C] into one [1, rows*H, cols*W, C] image."""
  images = np.asarray(images)[:max_images]
  count, height, width, channels = images.shape
  cols = int(math.ceil(math.sqrt(count)))
  rows = int(math.ceil(count / cols))
  grid = np.zeros((rows * height, cols * width, channels), images.dtype)
  for i, image in enumerate(images):
    r, c = divmod(i, cols)
    grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
  return grid[None]


class Logger:
  """TensorBoard writers of one run (the chief's)."""

  def __init__(self, model_dir):
    self._writers = {
        split: tf.summary.create_file_writer(os.path.join(model_dir, split))
        for split in ("train", "test")}

  def epoch(self, epoch, row, images_per_sec):
    """The scalars of one metrics row."""
    self.scalars("train", epoch, {
        "loss": row["train_loss"], "accuracy": row["train_accuracy"],
        "learning_rate": row["lr"], "images_per_sec": images_per_sec})
    self.scalars("test", epoch, {
        "loss": row["test_loss"], "accuracy": row["test_accuracy"],
        "top5_accuracy": row["test_top5_accuracy"]})

  def scalar_series(self, split, name, steps, values):
    """One scalar `name` per step (e.g. the learning rate of every step)."""
    with self._writers[split].as_default():
      for step, value in zip(steps, values):
        tf.summary.scalar(name, float(value), step=int(step))
    self._writers[split].flush()

  def scalars(self, split, step, values):
    with self._writers[split].as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)
    self._writers[split].flush()

  def image_grid(self, name, images, step=0):
    with self._writers["train"].as_default(step=step):
      tf.summary.image(name, image_grid(images), max_outputs=1,
                       description="Training images exactly as the input "
                                   "pipeline yields them (after augmentation "
                                   "and corruption, before normalisation).")
    self._writers["train"].flush()

  def histograms(self, step, activations):
    with self._writers["train"].as_default(step=step):
      for name, values in activations.items():
        tf.summary.histogram(f"post_bn/{name}", values)
    self._writers["train"].flush()

  def close(self):
    for writer in self._writers.values():
      writer.close()


class NullLogger:
  """What non-chief workers log: nothing."""

  def scalars(self, *args, **kwargs):
    pass

  image_grid = histograms = epoch = scalar_series = scalars

  def close(self):
    pass


class ActivationProbe:
  """Post-BN (post-noise) activations in training mode on a fixed batch.

  Computed with `stateless_call`, so the moving statistics and noise seeds of
  the model are left as they are: logging does not change training.
  """

  def __init__(self, model, batch):
    self._probe = models.post_bn_activations_model(model)
    self._batch = batch

  def __call__(self, epoch):
    """{block name: numpy activations} of the model as it is now."""
    del epoch
    probe = self._probe
    outputs, _ = probe.stateless_call(
        [v.value for v in probe.trainable_variables],
        [v.value for v in probe.non_trainable_variables], self._batch,
        training=True)
    return {name: value.numpy() for name, value in outputs.items()}


def progress(mode, epoch, total, log=print):
  """`update(step, totals)` of one epoch's steps, called every steps_per_loop.

  bar: a progress bar; log: a line each call (step/total, loss, accuracy,
  images/s, time left in the epoch); none: nothing (the epoch lines only);
  auto: bar on a terminal, else log. `totals` = [loss sum, correct, images].
  """
  if mode == "auto":
    mode = "bar" if sys.stdout.isatty() else "log"
  if mode == "bar":
    bar = keras.utils.Progbar(total, stateful_metrics=["loss", "accuracy"])
    return lambda step, totals: bar.update(
        step, [("loss", totals[0] / totals[2]),
               ("accuracy", totals[1] / totals[2])])
  if mode == "none":
    return lambda step, totals: None
  start = time.time()

  def log_line(step, totals):
    seconds = max(time.time() - start, 1e-9)
    log(f"epoch {epoch} step {step}/{total}: loss={totals[0] / totals[2]:.4f} "
        f"accuracy={totals[1] / totals[2]:.4f} "
        f"{totals[2] / seconds:.0f} images/s, "
        f"{seconds / step * (total - step):.0f}s left")

  return log_line


def epoch_line(row, epochs, images_per_sec):
  """The line printed after each epoch."""
  return (f"epoch {row['epoch']}/{epochs}: "
          f"train_loss={row['train_loss']:.4f} "
          f"train_accuracy={row['train_accuracy']:.4f} "
          f"test_loss={row['test_loss']:.4f} "
          f"test_accuracy={row['test_accuracy']:.4f} "
          f"({row['seconds']:.1f}s, {images_per_sec:.0f} images/s)")
