"""AutoAugment's CIFAR-10 policy (Cubuk et al. 2019), vectorised over a batch.

Cubuk et al., "AutoAugment: Learning Augmentation Policies from Data", CVPR
2019: Sec. 3 (a policy is 25 sub-policies of two operations, each with a
probability and a magnitude; each image gets one sub-policy drawn uniformly)
and Appendix Table 7 (the CIFAR-10 policy). The table, the magnitude bins
and the order of the draws are torchvision's `AutoAugmentPolicy.CIFAR10`
(`torchvision.transforms.AutoAugment`): per image one sub-policy, then for
each of its two operations `u <= p` with u ~ U[0, 1) decides whether it runs,
and a fair coin flips the sign of signed magnitudes. Geometric operations use
nearest-neighbour sampling and fill with 0 (torchvision's defaults); the
photometric ones follow PIL (ImageOps / ImageEnhance) on uint8 values.

Vectorised: the random draws come from a stateless seed, outside XLA (see
`augment.py`); every operation slot then is three batch-wide passes, one of
which is the identity for every image whose operation is of another kind:

  geometric  ShearX/Y, TranslateX/Y, Rotate: one inverse affine map per image,
             then one gather of the source pixels (fill 0 outside)
  lut        Brightness, Contrast, Posterize, Solarize, Invert, AutoContrast,
             Equalize: a 256-entry table per image and channel, one gather
  blend      Color, Sharpness: degenerate + f (x - degenerate), f = 1 + m

Images are uint8 [B, H, W, 3]; the result is uint8 (values rounded and
clipped after every operation, as PIL's uint8 images are).
"""

import math

import numpy as np
import tensorflow as tf

from tfcifar.data import augment as augment_lib

NUM_BINS = 10
IMAGE_SIZE = 32

# Operation names, in the index order of OP_INDEX (0 = no operation).
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
       "Brightness", "Color", "Contrast", "Sharpness", "Posterize",
       "Solarize", "AutoContrast", "Equalize", "Invert")
OP_INDEX = {name: i for i, name in enumerate(OPS)}

# torchvision.transforms.AutoAugmentPolicy.CIFAR10: (op, probability, bin).
CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def magnitude_bins(image_size=IMAGE_SIZE):
  """{op: (values of the NUM_BINS bins, signed)}: torchvision's
  `AutoAugment._augmentation_space(10, (H, W))`."""
  enhance = (np.linspace(0.0, 0.9, NUM_BINS), True)
  posterize = 8 - np.round(np.arange(NUM_BINS) / ((NUM_BINS - 1) / 4))
  translate = np.trunc(np.linspace(0.0, 150.0 / 331.0 * image_size, NUM_BINS))
  return {
      "ShearX": (np.linspace(0.0, 0.3, NUM_BINS), True),
      "ShearY": (np.linspace(0.0, 0.3, NUM_BINS), True),
      "TranslateX": (translate, True),  # whole pixels, int() as torchvision
      "TranslateY": (translate, True),
      "Rotate": (np.linspace(0.0, 30.0, NUM_BINS), True),  # degrees
      "Brightness": enhance, "Color": enhance, "Contrast": enhance,
      "Sharpness": enhance,
      "Posterize": (posterize, False),  # bits kept
      "Solarize": (np.linspace(255.0, 0.0, NUM_BINS), False),  # threshold
  }


def policy_tables(policy=CIFAR10_POLICY, image_size=IMAGE_SIZE):
  """Arrays [P, 2]: op index, probability, magnitude, signed."""
  bins = magnitude_bins(image_size)
  ops = np.zeros((len(policy), 2), np.int32)
  probs = np.zeros((len(policy), 2), np.float32)
  mags = np.zeros((len(policy), 2), np.float64)
  signed = np.zeros((len(policy), 2), bool)
  for i, sub_policy in enumerate(policy):
    for j, (name, prob, bin_index) in enumerate(sub_policy):
      ops[i, j], probs[i, j] = OP_INDEX[name], prob
      if bin_index is not None:
        values, signed[i, j] = bins[name]
        mags[i, j] = values[bin_index]
  return ops, probs, mags, signed


# --- the draws (outside XLA) ----------------------------------------------


def autoaugment_params(batch_size, seed, policy=CIFAR10_POLICY,
                       image_size=IMAGE_SIZE):
  """Per image: sub-policy [B] and, per slot, op [B, 2] (0 where the op does
  not run) and signed magnitude [B, 2] float64, from a stateless seed."""
  ops, probs, mags, signed = (tf.constant(t) for t in
                              policy_tables(policy, image_size))
  draws = tf.random.stateless_uniform(
      tf.stack([5, batch_size]), tf.cast(seed, tf.int64), alg=augment_lib.ALG)
  sub_policy = tf.minimum(tf.cast(draws[0] * len(policy), tf.int32),
                          len(policy) - 1)
  u = tf.transpose(draws[1:3])  # [B, 2]
  negative = tf.transpose(draws[3:5]) < 0.5
  op = tf.gather(ops, sub_policy)
  runs = u <= tf.gather(probs, sub_policy)
  op = tf.where(runs, op, 0)
  sign = tf.where(tf.gather(signed, sub_policy) & negative,
                  tf.constant(-1.0, tf.float64), 1.0)
  return sub_policy, op, sign * tf.gather(mags, sub_policy)


# --- geometric operations -------------------------------------------------


def _is(op, *names):
  return tf.reduce_any(tf.stack([tf.equal(op, OP_INDEX[n]) for n in names]),
                       axis=0)


def inverse_affine(op, magnitude, height, width):
  """[B, 6] (a0, a1, a2, b0, b1, b2): output pixel (x, y) reads input
  (a0 x + a1 y + a2, b0 x + b1 y + b2), as ImageProjectiveTransformV3.

  Shears and translations are about the origin (top-left pixel; torchvision
  passes center=[0, 0] for shears); rotations about the image centre.
  """
  m = magnitude
  zero, one = tf.zeros_like(m), tf.ones_like(m)
  theta = m * (math.pi / 180.0)
  cos, sin = tf.cos(theta), tf.sin(theta)
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  rows = {
      "Identity": (one, zero, zero, zero, one, zero),
      "ShearX": (one, m, zero, zero, one, zero),
      "ShearY": (one, zero, zero, m, one, zero),
      "TranslateX": (one, zero, -m, zero, one, zero),
      "TranslateY": (one, zero, zero, zero, one, -m),
      "Rotate": (cos, -sin, cx - cos * cx + sin * cy,
                 sin, cos, cy - sin * cx - cos * cy),
  }
  out = tf.stack(rows["Identity"], axis=1)
  for name, row in rows.items():
    out = tf.where(tf.equal(op, OP_INDEX[name])[:, None],
                   tf.stack(row, axis=1), out)
  return out


def affine_nearest(images, transform):
  """images [B, H, W, C] mapped by per-image `transform` [B, 6]; nearest
  neighbour (round half up), 0 outside the image."""
  shape = tf.shape(images)
  batch, height, width = shape[0], images.shape[1], images.shape[2]
  ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32),
                       tf.range(width, dtype=tf.float32), indexing="ij")
  xs, ys = tf.reshape(xs, [1, -1]), tf.reshape(ys, [1, -1])
  t = [transform[:, i:i + 1] for i in range(6)]
  src_x = tf.cast(tf.floor(t[0] * xs + t[1] * ys + t[2] + 0.5), tf.int32)
  src_y = tf.cast(tf.floor(t[3] * xs + t[4] * ys + t[5] + 0.5), tf.int32)
  valid = ((src_x >= 0) & (src_x < width) & (src_y >= 0) &
           (src_y < height))
  flat = (tf.range(batch)[:, None] * (height * width) +
          tf.clip_by_value(src_y, 0, height - 1) * width +
          tf.clip_by_value(src_x, 0, width - 1))
  pixels = tf.gather(tf.reshape(images, [-1, images.shape[-1]]), flat)
  pixels = pixels * tf.cast(valid, images.dtype)[..., None]
  return tf.reshape(pixels, shape)


# --- per-channel lookup tables --------------------------------------------


def grayscale(images):
  """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 2**15) >> 16, [B,H,W,1]."""
  x = tf.cast(images, tf.int32)
  weighted = 19595 * x[..., 0] + 38470 * x[..., 1] + 7471 * x[..., 2]
  return tf.cast(tf.bitwise.right_shift(weighted + 32768, 16),
                 tf.float32)[..., None]


def channel_histograms(images):
  """[B, C, 256] counts of every value per image and channel."""
  x = tf.cast(images, tf.int32)
  batch, channels = tf.shape(x)[0], x.shape[-1]
  ids = (tf.range(batch)[:, None, None, None] * (channels * 256) +
         tf.range(channels)[None, None, None, :] * 256 + x)
  counts = tf.math.unsorted_segment_sum(
      tf.ones_like(tf.reshape(ids, [-1]), tf.float32), tf.reshape(ids, [-1]),
      batch * channels * 256)
  return tf.reshape(counts, [batch, channels, 256])


def equalize_lut(hist):
  """PIL ImageOps.equalize's table from histograms [B, C, 256]."""
  last = tf.reduce_max(tf.where(hist > 0, tf.range(256, dtype=tf.float32),
                                -1.0), axis=-1, keepdims=True)
  last_count = tf.reduce_sum(
      tf.where(tf.equal(tf.range(256, dtype=tf.float32), last), hist, 0.0),
      axis=-1, keepdims=True)
  step = tf.floor((tf.reduce_sum(hist, -1, keepdims=True) - last_count) / 255)
  before = tf.cumsum(hist, axis=-1, exclusive=True)
  lut = tf.floor((tf.floor(step / 2) + before) / tf.maximum(step, 1.0))
  identity = tf.range(256, dtype=tf.float32)
  return tf.where(step > 0, tf.minimum(lut, 255.0), identity)


def autocontrast_lut(images):
  """PIL ImageOps.autocontrast (cutoff 0) tables [B, C, 256]."""
  x = tf.cast(images, tf.float64)  # PIL computes the table in doubles
  lo = tf.reduce_min(x, axis=[1, 2])[..., None]  # [B, C, 1]
  hi = tf.reduce_max(x, axis=[1, 2])[..., None]
  identity = tf.range(256, dtype=tf.float64)
  scale = 255.0 / tf.maximum(hi - lo, 1.0)
  lut = tf.clip_by_value(tf.floor(identity * scale - lo * scale), 0, 255)
  return tf.where(hi > lo, lut, identity + 0 * lo)


def _blend(degenerate, x, factor):
  """PIL's Image.blend on uint8: truncated toward 0, then clipped."""
  return tf.clip_by_value(tf.floor(degenerate + factor * (x - degenerate)),
                          0.0, 255.0)


def lookup_tables(images, op, magnitude):
  """[B, C, 256] float tables of the lut operations (identity elsewhere)."""
  channels = images.shape[-1]
  # Doubles, as PIL's tables (1 - 0.6 is 0.4 only in float64).
  v = tf.broadcast_to(tf.range(256, dtype=tf.float64),
                      [tf.shape(images)[0], channels, 256])
  m = tf.cast(magnitude, tf.float64)[:, None, None]
  gray_mean = tf.cast(tf.floor(
      tf.reduce_mean(grayscale(images), [1, 2, 3]) + 0.5), tf.float64)
  bits = tf.clip_by_value(tf.cast(m, tf.int32), 0, 8)
  keep = tf.bitwise.left_shift(tf.bitwise.right_shift(
      tf.cast(v, tf.int32), 8 - bits), 8 - bits)
  tables = {
      "Brightness": _blend(0.0, v, 1.0 + m),
      "Contrast": _blend(gray_mean[:, None, None], v, 1.0 + m),
      "Posterize": tf.cast(keep, tf.float64),
      "Solarize": tf.where(v >= m, 255.0 - v, v),
      "Invert": 255.0 - v,
      "AutoContrast": autocontrast_lut(images),
      "Equalize": tf.cast(equalize_lut(channel_histograms(images)),
                          tf.float64),
  }
  out = v
  for name, table in tables.items():
    out = tf.where(tf.equal(op, OP_INDEX[name])[:, None, None], table, out)
  return tf.cast(out, tf.float32)


def apply_lookup(images, tables):
  """out[b, h, w, c] = tables[b, c, images[b, h, w, c]]."""
  batch, channels = tf.shape(images)[0], images.shape[-1]
  index = (tf.range(batch)[:, None, None, None] * (channels * 256) +
           tf.range(channels)[None, None, None, :] * 256 +
           tf.cast(images, tf.int32))
  return tf.gather(tf.reshape(tables, [-1]), index)


# --- blends ---------------------------------------------------------------

def smoothed(images):
  """PIL's ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13, rounded) with
  the border pixels kept, as ImageEnhance.Sharpness's degenerate image.

  Nine shifted slices instead of a depthwise convolution: XLA fuses them into
  one loop (its CPU convolution is 10x slower here).
  """
  height, width = images.shape[1], images.shape[2]
  total = 4.0 * images[:, 1:-1, 1:-1]
  for dy in range(3):
    for dx in range(3):
      total += images[:, dy:dy + height - 2, dx:dx + width - 2]
  inner = tf.pad(tf.round(total / 13.0), [[0, 0], [1, 1], [1, 1], [0, 0]])
  border = np.ones((1, height, width, 1), np.float32)
  border[:, 1:-1, 1:-1] = 0
  return images * border + inner * (1 - border)


def blend_ops(images, op, magnitude):
  """Color (toward grayscale) and Sharpness (toward smoothed)."""
  is_color = tf.equal(op, OP_INDEX["Color"])[:, None, None, None]
  is_sharp = tf.equal(op, OP_INDEX["Sharpness"])[:, None, None, None]
  degenerate = tf.where(is_color, grayscale(images),
                        tf.where(is_sharp, smoothed(images), images))
  factor = tf.where(is_color | is_sharp, 1.0 + magnitude[:, None, None, None],
                    1.0)
  return _blend(degenerate, images, factor)


# --- the augmentation -----------------------------------------------------


def _stages(jit_compile):
  """The three passes of a slot, each its own XLA function with jit_compile.

  Separately compiled on purpose: in one XLA cluster the per-image tables
  and degenerate images get fused into the per-pixel gathers and recomputed
  per pixel (a whole batch took 300 ms instead of about 5 ms).
  """
  if not jit_compile:
    return affine_nearest, lookup_tables, apply_lookup, blend_ops
  jit = lambda fn: tf.function(fn, jit_compile=True, autograph=False)
  return (jit(affine_nearest), jit(lookup_tables), jit(apply_lookup),
          jit(blend_ops))


_COMPILED = {}


def apply_op(images, op, magnitude, jit_compile=False):
  """One operation slot: images float32 (uint8 values) [B, H, W, C]."""
  if jit_compile not in _COMPILED:
    _COMPILED[jit_compile] = _stages(jit_compile)
  affine, tables, lookup, blend = _COMPILED[jit_compile]
  height, width = images.shape[1], images.shape[2]
  magnitude = tf.cast(magnitude, tf.float64)  # the tables need doubles
  single = tf.cast(magnitude, tf.float32)
  images = affine(images, inverse_affine(op, single, height, width))
  images = lookup(images, tables(images, op, magnitude))
  return blend(images, op, single)


def autoaugment(images, op, magnitude, jit_compile=False):
  """Both slots of each image's sub-policy; `op`/`magnitude` [B, 2] from
  `autoaugment_params`. uint8 [B, H, W, C] -> uint8. `jit_compile`: each
  pass XLA-compiled (call it outside any XLA function)."""
  x = tf.cast(images, tf.float32)
  for slot in range(op.shape[1]):
    x = apply_op(x, op[:, slot], magnitude[:, slot], jit_compile)
  out = tf.cast(x, tf.uint8)
  out.set_shape(images.shape)
  return out


def autoaugment_batch(images, seed):
  """AutoAugment (CIFAR-10 policy) of a uint8 batch with draws from `seed`."""
  images = tf.convert_to_tensor(images)
  _, op, magnitude = autoaugment_params(tf.shape(images)[0], seed,
                                        image_size=images.shape[1])
  return autoaugment(images, op, magnitude)
