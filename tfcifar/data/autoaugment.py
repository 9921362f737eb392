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
`augment.py`). A batch in progress is (pixels, tables): image b is
tables[b, c, pixels[b, h, w, c]], a 256-entry table per image and channel.
Two passes go over all its pixels:

  gather     crop+flip and the geometric operations of both slots (ShearX/Y,
             TranslateX/Y, Rotate: inverse affine maps, nearest neighbour,
             fill 0) as one index map and one gather; each map rounds its
             coordinates as the separate operations do, so it is exact
  lookup     the tables (the input pipeline puts its normalisation and
             Cutout into the same pass: `autoaugment_parts`)

In between, slot by slot, the lookup operations (Brightness, Contrast,
Posterize, Solarize, Invert, AutoContrast, Equalize) only put their table
after the image's: tables[b, c] <- table[tables[b, c]] (one pass over the
[B, C, 256] tables). Their statistics are those of the image
tables[pixels]: Equalize's histograms are the pixels' histograms moved
through the table; Contrast (mean grey level) and AutoContrast (extremes)
read the image. Pixels are rewritten only for the images that need it:
Color (blend with the grayscale image), Sharpness (with the smoothed one),
a geometric operation that could not join the gather, and, first, the
image of a pending table that one of these or Contrast or AutoContrast
reads (`READS_PIXELS`). A geometric operation joins the gather when the
operations before it are geometric or keep the fill value 0 (Brightness,
Color, Posterize; always, in the CIFAR-10 policy).

The statistics and the pixel operations are plain TensorFlow on the images
that need them; the passes over the whole batch (index map, gather, each
slot's tables, lookup) are XLA-compiled: integer work, and float products
taken in float64 (`product`), since XLA would fuse a float32 multiply-add
into one rounding; the results equal plain TensorFlow's bit for bit, and
PIL's.

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

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
LUT = ("Brightness", "Contrast", "Posterize", "Solarize", "Invert",
       "AutoContrast", "Equalize")
# Pointwise operations that keep the fill value 0 (f(0) = 0): a geometric
# operation after them gives the same image when it runs before them.
KEEPS_FILL = ("Identity", "Brightness", "Color", "Posterize") + GEOMETRIC


def _is(op, names):
  """Bool like `op`: its operation is one of `names`."""
  return tf.gather(tf.constant(np.isin(OPS, names)), op)


def rotation(magnitude):
  """(cos, sin) of `magnitude` degrees, float32 (outside XLA, whose cos and
  sin are other approximations)."""
  theta = magnitude * (math.pi / 180.0)
  return tf.cos(theta), tf.sin(theta)


def affine_rows(op, magnitude, cos, sin, height, width):
  """[B, 6] (a0, a1, a2, b0, b1, b2): output pixel (x, y) reads input
  (a0 x + a1 y + a2, b0 x + b1 y + b2), as ImageProjectiveTransformV3;
  `cos`, `sin` from `rotation(magnitude)`.

  Shears and translations are about the origin (top-left pixel; torchvision
  passes center=[0, 0] for shears); rotations about the image centre.
  """
  m = magnitude
  zero, one = tf.zeros_like(m), tf.ones_like(m)
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  rows = {
      "Identity": (one, zero, zero, zero, one, zero),
      "ShearX": (one, m, zero, zero, one, zero),
      "ShearY": (one, zero, zero, m, one, zero),
      "TranslateX": (one, zero, -m, zero, one, zero),
      "TranslateY": (one, zero, zero, zero, one, -m),
      "Rotate": (cos, -sin, cx - product(cos, cx) + product(sin, cy),
                 sin, cos, cy - product(sin, cx) - product(cos, cy)),
  }
  out = tf.stack(rows["Identity"], axis=1)
  for name, row in rows.items():
    out = tf.where(tf.equal(op, OP_INDEX[name])[:, None],
                   tf.stack(row, axis=1), out)
  return out


def inverse_affine(op, magnitude, height, width):
  """`affine_rows` of float32 `magnitude` [B]."""
  return affine_rows(op, magnitude, *rotation(magnitude), height, width)


def _grid(height, width):
  """Output pixel coordinates x, y, float32 [1, H*W]."""
  ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  return (tf.constant(xs.reshape(1, -1), tf.float32),
          tf.constant(ys.reshape(1, -1), tf.float32))


def _source(transform, xs, ys, height, width):
  """Nearest source pixel (round half up) of points (xs, ys) [k, N] under
  `transform` [k, 6]: x, y int32 and whether it is inside the image."""
  t = [transform[:, i:i + 1] for i in range(6)]
  x = tf.cast(tf.floor(t[0] * xs + t[1] * ys + t[2] + 0.5), tf.int32)
  y = tf.cast(tf.floor(t[3] * xs + t[4] * ys + t[5] + 0.5), tf.int32)
  return x, y, (x >= 0) & (x < width) & (y >= 0) & (y < height)


def affine_nearest(images, transform):
  """images [B, H, W, C] mapped by per-image `transform` [B, 6]; nearest
  neighbour (round half up), 0 outside the image."""
  shape = tf.shape(images)
  height, width = images.shape[1], images.shape[2]
  x, y, valid = _source(transform, *_grid(height, width), height, width)
  flat = (tf.range(shape[0])[:, None] * (height * width) +
          tf.clip_by_value(y, 0, height - 1) * width +
          tf.clip_by_value(x, 0, width - 1))
  pixels = tf.gather(tf.reshape(images, [-1, images.shape[-1]]), flat)
  pixels = pixels * tf.cast(valid, images.dtype)[..., None]
  return tf.reshape(pixels, shape)


def product(a, b):
  """float32 a * b, b with at most 29 significant bits (an integer below
  2**29, the image centre 15.5): computed in float64, where it is exact, then
  rounded, so the value is plain float32 multiplication's. Under XLA, a
  float32 product followed by an addition becomes one fused multiply-add
  (one rounding instead of two), which moves rounding ties."""
  return tf.cast(tf.cast(a, tf.float64) * tf.cast(b, tf.float64), tf.float32)


def geometric_maps(op, magnitude, turns, height, width):
  """(transforms [B, slots, 6], late [B, slots] bool): each slot's map for
  `source_index` (the identity where it has no geometric operation) and its
  geometric operations left for later.

  A geometric operation joins the map when the operations before it keep
  the fill value 0. `turns`: `rotation` of each slot's float32 magnitude.
  """
  single = tf.cast(magnitude, tf.float32)
  geometric, early = _is(op, GEOMETRIC), []
  keeps_fill = True
  for slot in range(op.shape[1]):
    early.append(geometric[:, slot] & keeps_fill)
    keeps_fill &= _is(op[:, slot], KEEPS_FILL)
  transforms = [affine_rows(tf.where(e, op[:, s], 0), single[:, s],
                            *turns[s], height, width)
                for s, e in enumerate(early)]
  return tf.stack(transforms, 1), geometric & ~tf.stack(early, 1)


def source_index(transforms, crop_flip, height, width):
  """[B, H, W] int32: the pixel of the flattened input batch [B*H*W, C] that
  each output pixel reads, -1 (the fill value) outside the image.

  The maps `transforms` [B, slots, 6] (`geometric_maps`) go from the last
  slot to the first, each rounding its coordinates as the separate
  operations do, then through crop+flip (`crop_flip`: row and column
  offsets in the padded image, flip).
  """
  image = tf.range(tf.shape(transforms)[0])[:, None, None]
  x = tf.range(width, dtype=tf.float32)[None, None]
  y = tf.range(height, dtype=tf.float32)[None, :, None]
  valid = True
  for slot in reversed(range(transforms.shape[1])):  # whole numbers in float
    t = [transforms[:, slot, i, None, None] for i in range(6)]
    x, y = (tf.floor(product(t[0], x) + product(t[1], y) + t[2] + 0.5),
            tf.floor(product(t[3], x) + product(t[4], y) + t[5] + 0.5))
    valid &= (x >= 0) & (x < width) & (y >= 0) & (y < height)
  x, y = tf.cast(x, tf.int32), tf.cast(y, tf.int32)
  pad = augment_lib.PAD
  row, col, flip = [t[:, None, None] for t in crop_flip]
  y, x = tf.clip_by_value(y, 0, height - 1), tf.clip_by_value(x, 0, width - 1)
  x = tf.where(flip, width - 1 - x, x)
  flat = (image * (height * width) +
          augment_lib.reflect_index(y + row - pad, height) * width +
          augment_lib.reflect_index(x + col - pad, width))
  return tf.where(valid, flat, -1)


def gather_pixels(images, index):
  """images [B, H, W, C] at `index` [B, H, W] of the flattened batch, 0 at
  index -1."""
  pixels = tf.gather(tf.reshape(images, [-1, images.shape[-1]]),
                     tf.maximum(index, 0))
  return pixels * tf.cast(index >= 0, images.dtype)[..., None]


# --- per-image tables (image b is tables[b, c, pixels[b, h, w, c]]) --------


def grayscale(images):
  """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 2**15) >> 16, [B,H,W,1]."""
  x = tf.cast(images, tf.int32)
  weighted = 19595 * x[..., 0] + 38470 * x[..., 1] + 7471 * x[..., 2]
  return tf.cast(tf.bitwise.right_shift(weighted + 32768, 16),
                 tf.float32)[..., None]


def mean_gray(images):
  """[B] float32: the mean grey level rounded, Contrast's degenerate value."""
  return tf.floor(tf.reduce_mean(grayscale(images), [1, 2, 3]) + 0.5)


def channel_histograms(images):
  """[B, C, 256] int32 counts of every value per image and channel."""
  batch, channels = tf.shape(images)[0], images.shape[-1]
  size = batch * channels * 256
  ids = tf.cast(images, tf.int32) + 256 * tf.reshape(
      tf.range(batch * channels), [batch, 1, 1, channels])
  counts = tf.math.bincount(tf.reshape(ids, [-1]), minlength=size,
                            maxlength=size)
  return tf.reshape(counts, [batch, channels, 256])


def equalize_lut(hist):
  """PIL ImageOps.equalize's table from int32 histograms [B, C, 256] (in
  integers, as PIL)."""
  values = tf.range(256)
  last = tf.reduce_max(tf.where(hist > 0, values, -1), -1, keepdims=True)
  last_count = tf.reduce_sum(tf.where(tf.equal(values, last), hist, 0), -1,
                             keepdims=True)
  step = (tf.reduce_sum(hist, -1, keepdims=True) - last_count) // 255
  before = tf.cumsum(hist, axis=-1, exclusive=True)
  lut = (step // 2 + before) // tf.maximum(step, 1)
  return tf.where(step > 0, tf.minimum(lut, 255), values)


def autocontrast_lut(lo, hi):
  """PIL ImageOps.autocontrast's (cutoff 0) tables [B, C, 256] from each
  channel's lowest and highest values [B, C], float64 as PIL computes them:
  lo and hi stretched to 0 and 255."""
  values = tf.range(256, dtype=tf.float64)
  lo = tf.cast(lo, tf.float64)[..., None]
  hi = tf.cast(hi, tf.float64)[..., None]
  scale = 255.0 / tf.maximum(hi - lo, 1.0)
  lut = tf.clip_by_value(tf.floor(values * scale - lo * scale), 0, 255)
  return tf.where(hi > lo, lut, values + 0 * lo)


def pushed_histograms(hist, tables):
  """The histograms of tables[pixels] from those of the pixels `hist`: the
  count of value v moves to tables[v]."""
  rows = tf.shape(hist)[0] * hist.shape[1]
  ids = tf.cast(tables, tf.int32) + 256 * tf.reshape(tf.range(rows),
                                                     [-1, hist.shape[1], 1])
  counts = tf.math.unsorted_segment_sum(tf.reshape(hist, [-1]),
                                        tf.reshape(ids, [-1]), rows * 256)
  return tf.reshape(counts, tf.shape(hist))


def fitted_tables(pixels, tables, op):
  """[B, C, 256] uint8: AutoContrast's and Equalize's tables of the images
  tables[pixels] (`tables` None: the identity), 0 for the other operations;
  computed only for those images. (AutoContrast's images have no pending
  table: READS_PIXELS.)"""
  rows = lambda index, t: tf.gather_nd(t, index)
  autocontrast = tf.where(tf.equal(op, OP_INDEX["AutoContrast"]))
  x = rows(autocontrast, pixels)
  found = [autocontrast_lut(tf.reduce_min(x, [1, 2]),
                            tf.reduce_max(x, [1, 2]))]
  equalize = tf.where(tf.equal(op, OP_INDEX["Equalize"]))
  hist = channel_histograms(rows(equalize, pixels))
  if tables is not None:
    hist = pushed_histograms(hist, rows(equalize, tables))
  found.append(equalize_lut(hist))
  found = [tf.cast(t, tf.uint8) for t in found]
  shape = tf.shape(pixels, tf.int64)
  return tf.scatter_nd(tf.concat([autocontrast, equalize], 0),
                       tf.concat(found, 0), [shape[0], shape[3], 256])


def pil_factor(magnitude):
  """The enhance factor 1 + m as PIL's ImagingBlend receives it: the double
  1.0 + m passed as a C float."""
  return tf.cast(1.0 + tf.cast(magnitude, tf.float64), tf.float32)


def _blend(degenerate, x, factor):
  """PIL's Image.blend on uint8 (Blend.c): in float32, degenerate + factor *
  (x - degenerate), each operation rounded, truncated toward 0, clipped.
  `degenerate` and `x` hold whole numbers, `factor` is `pil_factor`'s."""
  difference = tf.cast(x - degenerate, tf.int32)
  return tf.clip_by_value(
      tf.floor(tf.cast(degenerate, tf.float32) + product(factor, difference)),
      0.0, 255.0)


def slot_tables(op, magnitude, gray, fitted):
  """[B, C, 256] int32: each image's table of this slot (identity but for
  the lookup operations).

  Doubles, as PIL's tables (1 - 0.6 is 0.4 only in float64), but Brightness
  and Contrast blend in float32 as PIL's Image.blend does (with 0 / the mean
  gray level `gray` [B]); Invert is Solarize at 0; those tables are the same
  for every channel. AutoContrast and Equalize: `fitted` [B, C, 256].
  """
  is_ = lambda *names: _is(op, names)[:, None]
  v = tf.range(256, dtype=tf.float64)
  m = tf.cast(magnitude, tf.float64)[:, None]  # [B, 1]
  bits = tf.clip_by_value(tf.cast(m, tf.int32), 0, 8)
  keep = tf.bitwise.left_shift(tf.bitwise.right_shift(
      tf.range(256)[None], 8 - bits), 8 - bits)
  table = tf.where(
      is_("Brightness", "Contrast"),
      tf.cast(_blend(tf.cast(gray, tf.float64)[:, None], v, pil_factor(m)),
              tf.float64),
      tf.where(is_("Solarize", "Invert"),
               tf.where(v >= tf.where(is_("Invert"), 0 * m, m), 255.0 - v, v),
               tf.where(is_("Posterize"), tf.cast(keep, tf.float64), v)))
  return tf.where(is_("AutoContrast", "Equalize")[..., None],
                  tf.cast(fitted, tf.int32), tf.cast(table, tf.int32)[:, None])


def next_tables(tables, applied, op, magnitude, gray, fitted):
  """uint8 [B, C, 256]: this slot's tables put after `tables` (None: the
  identity; the identity where `applied`: those pixels were looked up)."""
  table = slot_tables(op, magnitude, gray, fitted)
  if tables is not None:
    tables = tf.where(applied[:, None, None],
                      tf.cast(tf.range(256), tables.dtype), tables)
    table = tf.gather(table, tf.cast(tables, tf.int32), batch_dims=2)
  return tf.cast(table, tf.uint8)


def apply_tables(images, tables):
  """out[b, h, w, c] = tables[b, c, images[b, h, w, c]]: a gather per image
  from its C * 256 entries (under XLA about twice as fast as one gather from
  the whole batch's tables)."""
  shape = tf.shape(images)
  index = tf.cast(images, tf.int32) + tf.range(images.shape[-1]) * 256
  out = tf.gather(tf.reshape(tables, [shape[0], -1]),
                  tf.reshape(index, [shape[0], -1]), batch_dims=1)
  return tf.reshape(out, shape)


# --- operations on pixels -------------------------------------------------


def _subset(mask, fn, out, *tensors):
  """`out` with its rows where `mask` replaced by fn(*those rows of tensors)."""
  index = tf.where(mask)
  rows = fn(*[tf.gather_nd(t, index) for t in tensors])
  return tf.tensor_scatter_nd_update(out, index, tf.cast(rows, out.dtype))


def color(images, magnitude):
  """ImageEnhance.Color: blend with the grayscale image, f = 1 + m."""
  factor = pil_factor(magnitude)[:, None, None, None]
  return _blend(grayscale(images), tf.cast(images, tf.float32), factor)


def sharpness(images, magnitude):
  """ImageEnhance.Sharpness: blend with PIL's ImageFilter.SMOOTH ([[1,1,1],
  [1,5,1],[1,1,1]] / 13, rounded), f = 1 + m; the border pixels are kept.

  On [B, H, W*C]; the 3x3 sum is a sum of three rows of sums of three
  (whole numbers, exact in float32)."""
  shape, c = tf.shape(images), images.shape[-1]
  x = tf.reshape(tf.cast(images, tf.float32), [shape[0], shape[1], -1])
  rows = x[:, :-2] + x[:, 1:-1] + x[:, 2:]
  inner = x[:, 1:-1, c:-c]
  total = rows[..., :-2 * c] + rows[..., c:-c] + rows[..., 2 * c:] + 4 * inner
  factor = pil_factor(magnitude)[:, None, None]
  blended = _blend(tf.round(total / 13.0), inner, factor)
  out = x + tf.pad(blended - inner, [[0, 0], [1, 1], [c, c]])
  return tf.cast(tf.reshape(out, shape), images.dtype)


# --- the augmentation -----------------------------------------------------

# Operations that read the image itself: an image with a pending table gets
# it applied to its pixels first (as does a late geometric operation's).
# Equalize needs only histograms, which move through the table.
READS_PIXELS = ("Color", "Sharpness", "Contrast", "AutoContrast")

_PASSES = {}


def _passes(jit_compile):
  """(geometric_maps, source_index, gather_pixels, next_tables,
  apply_tables), XLA-compiled with `jit_compile`. Maps, index and gather are
  separate calls: fused, the maps' selections are recomputed for every pixel
  (1.3x slower) and the index arithmetic is not vectorised (3x slower)."""
  if jit_compile not in _PASSES:
    jit = lambda fn: tf.function(fn, jit_compile=True, autograph=False)
    passes = (geometric_maps, source_index, gather_pixels, next_tables,
              apply_tables)
    _PASSES[jit_compile] = tuple(map(jit, passes)) if jit_compile else passes
  return _PASSES[jit_compile]


def _slot(pixels, tables, pending, op, magnitude, late, next_):
  """One slot's operations `op` [B]: (pixels, tables, pending) after it.

  `tables` (None: the identity) and `pending` [B] (whether an image's table
  is not the identity; None: nowhere) as `autoaugment_parts` keeps them;
  `late` [B]: geometric operations not in the gather. The images whose
  operation reads them get their pending table applied first; the lookup
  operations put their table after the image's (`next_tables`); Color,
  Sharpness and the late geometric operations rewrite their images' pixels.
  """
  height, width = pixels.shape[1], pixels.shape[2]
  is_ = lambda *names: _is(op, names)
  applied = None
  if tables is not None:
    applied = pending & (is_(*READS_PIXELS) | late)
    pixels = _subset(applied, apply_tables, pixels, pixels, tables)
    pending &= ~applied
  gray = _subset(is_("Contrast"), mean_gray, tf.zeros([tf.shape(op)[0]]),
                 pixels)
  fitted = fitted_tables(pixels, tables, op)
  tables = next_(tables, applied, op, magnitude, gray, fitted)
  pending = is_(*LUT) if pending is None else pending | is_(*LUT)
  pixels = _subset(is_("Color"), color, pixels, pixels, magnitude)
  pixels = _subset(is_("Sharpness"), sharpness, pixels, pixels, magnitude)
  late_affine = lambda x, o, m: affine_nearest(
      x, inverse_affine(o, m, height, width))
  single = tf.cast(magnitude, tf.float32)
  pixels = tf.cond(tf.reduce_any(late), lambda: _subset(
      late, late_affine, pixels, pixels, op, single), lambda: pixels)
  return pixels, tables, pending


def autoaugment_parts(images, op, magnitude, crop_flip=None,
                      jit_compile=True):
  """(pixels uint8 [B, H, W, C], tables uint8 [B, C, 256]): `autoaugment`'s
  result is tables[b, c, pixels[b, h, w, c]] (`apply_tables`), all but its
  last pass, which a caller may compile with its own work."""
  images = tf.convert_to_tensor(images)
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  if crop_flip is None:  # the window at the centre, not flipped
    crop_flip = tf.fill([batch], augment_lib.PAD), tf.fill(
        [batch], augment_lib.PAD), tf.zeros([batch], tf.bool)
  maps, index, gather, next_, _ = _passes(jit_compile)
  single = tf.cast(magnitude, tf.float32)
  turns = [rotation(single[:, slot]) for slot in range(op.shape[1])]
  transforms, late = maps(op, magnitude, turns, height, width)
  x = gather(images, index(transforms, tuple(crop_flip), height, width))
  tables = pending = None
  for slot in range(op.shape[1]):
    x, tables, pending = _slot(x, tables, pending, op[:, slot],
                               magnitude[:, slot], late[:, slot], next_)
  x.set_shape(images.shape)
  return x, tables


def autoaugment(images, op, magnitude, crop_flip=None, jit_compile=True):
  """Each image's operations `op`/`magnitude` [B, slots] (from
  `autoaugment_params`), in slot order, on uint8 [B, H, W, C] -> uint8.

  `crop_flip`: (rows, cols, flip) of `augment.crop_flip_params`, applied
  first, in the same gather as the geometric operations. `jit_compile`:
  the passes over the whole batch XLA-compiled (same results).
  """
  pixels, tables = autoaugment_parts(images, op, magnitude, crop_flip,
                                     jit_compile)
  out = _passes(jit_compile)[-1](pixels, tables)
  out.set_shape(pixels.shape)
  return out


def autoaugment_batch(images, seed):
  """AutoAugment (CIFAR-10 policy) of a uint8 batch with draws from `seed`."""
  images = tf.convert_to_tensor(images)
  _, op, magnitude = autoaugment_params(tf.shape(images)[0], seed,
                                        image_size=images.shape[1])
  return autoaugment(images, op, magnitude)
