"""Standard CIFAR-10 augmentation as one vectorised, stateless tensor function.

`augment_batch` reflect-pads every image by `PAD` pixels on each side (the
mirror of the image, as `tf.pad(..., mode="REFLECT")`), takes a random 32x32
window of the 40x40 result and flips it horizontally with probability 0.5.

The padded image is never built: each output pixel's source row and column are
computed from the per-image offsets (reflection and flip folded into the index
arithmetic) and the whole batch is read with one `tf.gather`, so the cost is
one pass over the output pixels.
"""

import tensorflow as tf

PAD = 4
# Philox via the default algorithm: one key/counter op per draw. The draws are
# made outside XLA (XLA's Philox orders its stream differently).
ALG = "auto_select"


def reflect_index(index, size):
  """Maps indices in [-size+1, 2*size-2] to [0, size-1] by mirror reflection.

  Matches `tf.pad(mode="REFLECT")`: padded position -1 reads pixel 1, position
  `size` reads pixel `size - 2` (the edge pixel is not repeated).
  """
  index = tf.abs(index)
  return (size - 1) - tf.abs((size - 1) - index)


def crop_flip_params(batch_size, seed, pad=PAD):
  """Per-image (row offset, column offset, flip) drawn from a stateless seed.

  Offsets are in [0, 2*pad]: the top-left corner of the window in the padded
  image. Returns int32 [B], int32 [B], bool [B].
  """
  # One draw in [0, 2 * (2 * pad + 1)): its residues mod 2*pad+1 and mod 2 are
  # both exactly uniform.
  span = 2 * (2 * pad + 1)
  draws = tf.random.stateless_uniform(
      tf.stack([3, batch_size]), tf.cast(seed, tf.int64), 0, span, tf.int32,
      alg=ALG)
  rows = draws[0] % (2 * pad + 1)
  cols = draws[1] % (2 * pad + 1)
  flip = tf.equal(draws[2] % 2, 1)
  return rows, cols, flip


def source_indices(rows, cols, flip, height, width, pad=PAD):
  """Source row [B, H] and column [B, W] of every output pixel."""
  out_rows = tf.range(height)[None, :] + rows[:, None] - pad
  out_cols = tf.range(width)[None, :]
  out_cols = tf.where(flip[:, None], width - 1 - out_cols, out_cols)
  out_cols = out_cols + cols[:, None] - pad
  return reflect_index(out_rows, height), reflect_index(out_cols, width)


def crop_flip(images, rows, cols, flip, pad=PAD):
  """Windows of the reflect-padded `images` [B, H, W, C] at the given offsets.

  `rows`/`cols` index the padded image (0..2*pad); `flip` mirrors the window.
  """
  shape = tf.shape(images)
  batch, height, width = shape[0], shape[1], shape[2]
  src_rows, src_cols = source_indices(rows, cols, flip, height, width, pad)
  flat = (tf.range(batch)[:, None, None] * (height * width) +
          src_rows[:, :, None] * width + src_cols[:, None, :])
  pixels = tf.reshape(images, [-1, images.shape[-1]])
  out = tf.reshape(tf.gather(pixels, flat), shape)
  out.set_shape(images.shape)  # keep static shapes (XLA train step)
  return out


def augment_batch(images, seed):
  """Random reflect-pad-4 crop and horizontal flip of a batch of images.

  Args:
    images: [B, H, W, C] tensor of any dtype (the pipeline passes uint8).
    seed: stateless seed, int tensor of shape [2]; the same seed gives the
      same crops and flips.

  Returns:
    A tensor like `images`.
  """
  images = tf.convert_to_tensor(images)
  shape = tf.shape(images)
  rows, cols, flip = crop_flip_params(shape[0], seed)
  return crop_flip(images, rows, cols, flip)
