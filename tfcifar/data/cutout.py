"""Cutout (DeVries & Taylor 2017): one square of every image set to zero.

Sec. 3 of the paper: a fixed-size square is zeroed at a centre drawn
uniformly over the image, and the square may fall partly outside it (clipped
at the border), which the paper found important. As there, it is applied
after normalisation, so the zeroed pixels are the (train) mean pixel with
--preprocess=standardize, and after every other augmentation.

Vectorised: the centres of the batch are drawn from a stateless seed, and the
square is one broadcast mask multiplied into the batch.
"""

import tensorflow as tf

from tfcifar.data import augment as augment_lib


def cutout_params(batch_size, seed, height=32, width=32):
  """Per-image centre (row int32 [B], col int32 [B]), uniform over the image."""
  draws = tf.random.stateless_uniform(
      tf.stack([2, batch_size]), tf.cast(seed, tf.int64), 0,
      height * width, tf.int32, alg=augment_lib.ALG)
  return draws[0] % height, draws[1] % width


def cutout_mask(rows, cols, size, height, width):
  """[B, H, W, 1] float32: 0 inside each image's clipped square, else 1.

  The square covers rows [r - size//2, r - size//2 + size) and the same
  columns around c.
  """
  top = rows[:, None] - size // 2
  left = cols[:, None] - size // 2
  r = tf.range(height)[None, :]
  c = tf.range(width)[None, :]
  in_rows = (r >= top) & (r < top + size)  # [B, H]
  in_cols = (c >= left) & (c < left + size)  # [B, W]
  inside = in_rows[:, :, None] & in_cols[:, None, :]
  return tf.cast(tf.logical_not(inside), tf.float32)[..., None]


def cutout(images, rows, cols, size):
  """`images` [B, H, W, C] (float) with the square around (rows, cols) zeroed."""
  shape = images.shape
  mask = cutout_mask(rows, cols, size, shape[1], shape[2])
  return images * tf.cast(mask, images.dtype)


def cutout_batch(images, seed, size):
  """Cutout with centres drawn from `seed` (int tensor [2])."""
  images = tf.convert_to_tensor(images)
  rows, cols = cutout_params(tf.shape(images)[0], seed, images.shape[1],
                             images.shape[2])
  return cutout(images, rows, cols, size)
