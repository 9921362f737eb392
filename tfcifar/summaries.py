"""TensorBoard logging: scalars per epoch, the input image grid, histograms.

Train scalars go to `<model_dir>/train`, test scalars to `<model_dir>/test`,
both under the tags `loss` and `accuracy`, so TensorBoard draws train and
test on one chart. Only the chief writes; other workers get a no-op logger.
"""

import math
import os

import numpy as np
import tensorflow as tf


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

  def scalars(self, split, step, values):
    with self._writers[split].as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)
    self._writers[split].flush()

  def scalar_series(self, split, name, steps, values):
    """One scalar `name` per step (e.g. the learning rate of every step)."""
    with self._writers[split].as_default():
      for step, value in zip(steps, values):
        tf.summary.scalar(name, float(value), step=int(step))
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

  image_grid = histograms = scalar_series = scalars

  def close(self):
    pass
