"""Input preprocessing: uint8 pixels -> float32 network inputs (--preprocess).

Each preprocessor is a pure tensor function `apply(images, **stats)` of a
batch of images in 0..255 units (float32 [B, H, W, C]) and the statistics
fitted on the train split by its `fit(train_images uint8) -> {name: array}`
(None: nothing to fit). The same statistics are applied to train and test.

  standardize  (x - mean_c) / std_c, per-channel train mean/std (the study)
  unit         x / 255, in [0, 1]
  mean         x / 255 - m, m the mean of all train RGB values in [0, 1]
               units (one number; the chainer CIFAR example's preprocessing)
  gcn          global contrast normalisation per image (Goodfellow et al.
               2013, Maxout Networks, Sec. 5.2; Coates et al. 2011, Sec. 3):
               s (x - mean) / max(eps, sqrt(lambda + std^2)), the mean and
               std over the image's H*W*C values, with GCN_SCALE s = 1,
               GCN_LAMBDA lambda = 10 (0..255 units) and GCN_EPSILON eps =
               1e-8: every image has mean 0 and std s*std/sqrt(lambda+std^2)
               (0.99..1 for std >= 22)
  zca          ZCA whitening of x / 255 (Krizhevsky 2009, Appendix A; Bell &
               Sejnowski 1997): (x - mu) W, W = U diag(1/sqrt(S + eps)) U^T
               from the eigendecomposition U S U^T of the train covariance,
               ZCA_EPSILON eps = 0.01 (in the units of its input)
  gcn_zca      gcn, then ZCA fitted on the gcn'd train split (Goodfellow et
               al. 2013's CIFAR-10 preprocessing)
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

GCN_SCALE = 1.0
GCN_LAMBDA = 10.0
GCN_EPSILON = 1e-8
ZCA_EPSILON = 1e-2
_FIT_BLOCK = 1024  # images per block of the covariance sum


# --- pure tensor functions ------------------------------------------------


def standardize(images, mean, std):
  """(x - mean) / std per channel; exactly the pipeline's historical map."""
  shift = tf.constant(np.asarray(mean, np.float32))
  scale = tf.constant(np.asarray([1.0 / s for s in std], np.float32))
  return (tf.cast(images, tf.float32) - shift) * scale


def unit(images):
  return standardize(images, [0.0] * 3, [255.0] * 3)


def subtract_mean(images, mean):
  """x / 255 - mean (mean in [0, 1] units)."""
  return tf.cast(images, tf.float32) / 255.0 - tf.constant(
      float(np.asarray(mean)), tf.float32)


def gcn(images, scale=GCN_SCALE, sqr_bias=GCN_LAMBDA, epsilon=GCN_EPSILON):
  """Global contrast normalisation of every image of [B, H, W, C]."""
  images = tf.cast(images, tf.float32)
  mean, variance = tf.nn.moments(images, axes=[1, 2, 3], keepdims=True)
  return scale * (images - mean) / tf.maximum(
      epsilon, tf.sqrt(sqr_bias + variance))


def zca(images, mean, matrix):
  """(x - mean) W over the flattened image; `images` [B, ...] float."""
  images = tf.cast(images, tf.float32)
  flat = tf.reshape(images, [tf.shape(images)[0], -1])
  out = tf.matmul(flat - tf.constant(np.asarray(mean, np.float32)),
                  tf.constant(np.asarray(matrix, np.float32)))
  return tf.reshape(out, tf.shape(images))


# --- fitting (numpy, once per dataset) ------------------------------------


def fit_zca(flat_images, epsilon=ZCA_EPSILON):
  """{'mean': [D], 'matrix': [D, D]} of ZCA whitening of rows [N, D].

  The covariance is summed in blocks in float64; `np.linalg.eigh` gives
  U S U^T and W = U diag(1 / sqrt(S + epsilon)) U^T (symmetric).
  """
  n, d = flat_images.shape
  mean = np.zeros(d)
  for start in range(0, n, _FIT_BLOCK):
    mean += flat_images[start:start + _FIT_BLOCK].sum(0, dtype=np.float64)
  mean /= n
  cov = np.zeros((d, d))
  for start in range(0, n, _FIT_BLOCK):
    block = flat_images[start:start + _FIT_BLOCK].astype(np.float64) - mean
    cov += block.T @ block
  cov /= n
  eigenvalues, vectors = np.linalg.eigh(cov)
  eigenvalues = np.maximum(eigenvalues, 0.0)
  matrix = (vectors / np.sqrt(eigenvalues + epsilon)) @ vectors.T
  return {"mean": mean.astype(np.float32), "matrix": matrix.astype(np.float32)}


def _in_blocks(fn, images):
  """fn applied to blocks of uint8 images, as one float32 [N, D] array."""
  return np.concatenate([
      fn(images[s:s + _FIT_BLOCK]).numpy().reshape(
          len(images[s:s + _FIT_BLOCK]), -1)
      for s in range(0, len(images), _FIT_BLOCK)])


def _fit_mean(images):
  return {"mean": np.float64(np.asarray(images, np.float64).mean() / 255.0)}


def _fit_zca(images):
  return fit_zca(_in_blocks(lambda b: tf.cast(b, tf.float32) / 255.0, images))


def _fit_gcn_zca(images):
  return fit_zca(_in_blocks(gcn, images))


def _apply_zca(images, mean, matrix):
  return zca(tf.cast(images, tf.float32) / 255.0, mean, matrix)


def _apply_gcn_zca(images, mean, matrix):
  return zca(gcn(images), mean, matrix)


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """`apply(images, **stats)`; `fit(train uint8 images) -> stats` or None;
  `channel_stats`: its stats are the manifest's per-channel mean/std."""
  apply: Callable
  fit: Optional[Callable] = None
  channel_stats: bool = False


PREPROCESSORS = {
    "standardize": Preprocessor(standardize, channel_stats=True),
    "unit": Preprocessor(unit),
    "mean": Preprocessor(subtract_mean, _fit_mean),
    "gcn": Preprocessor(gcn),
    "zca": Preprocessor(_apply_zca, _fit_zca),
    "gcn_zca": Preprocessor(_apply_gcn_zca, _fit_gcn_zca),
}
