"""Cutout (DeVries & Taylor 2017): one clipped square of zeros per image."""

import numpy as np
import tensorflow as tf

from tfcifar.data import cutout


def expected_mask(row, col, size, height=32, width=32):
  """numpy: 1 outside the square around (row, col), clipped to the image."""
  mask = np.ones((height, width))
  top, left = row - size // 2, col - size // 2
  mask[max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0
  return mask


def test_zeroes_exactly_one_clipped_square_per_image():
  images = tf.ones([400, 32, 32, 3])
  seed = tf.constant([3, 4])
  out = cutout.cutout_batch(images, seed, 8).numpy()
  rows, cols = (t.numpy() for t in cutout.cutout_params(400, seed))
  clipped = 0
  for image, row, col in zip(out, rows, cols):
    mask = expected_mask(row, col, 8)
    np.testing.assert_array_equal(image, np.repeat(mask[..., None], 3, -1))
    clipped += (mask == 0).sum() < 64
  # Centres are uniform over the image, so squares often hang over the edge
  # (P = 1 - (25/32)^2 ~ 0.39 for size 8 with this centring).
  assert 100 < clipped < 220
  assert set(rows) == set(range(32)) and set(cols) == set(range(32))


def test_same_seed_same_squares_and_values_kept_outside():
  images = tf.random.stateless_normal([16, 32, 32, 3], [1, 2])
  a = cutout.cutout_batch(images, tf.constant([5, 6]), 16).numpy()
  b = cutout.cutout_batch(images, tf.constant([5, 6]), 16).numpy()
  np.testing.assert_array_equal(a, b)
  kept = a != 0
  np.testing.assert_array_equal(a[kept], images.numpy()[kept])
