"""The dataset corruptions of Zhang et al. 2017, as pure seeded numpy functions.

Each corruption maps the stored (uint8 images [N, 32, 32, 3], labels [N]) of a
whole split to corrupted copies. It is computed once per process from the seed
alone (never from the epoch, `max_examples` or the sharding), so example i is
corrupted the same way in every epoch, after a resume and on every worker.

  labels            each train label, with probability p, replaced by a class
                    drawn uniformly from all 10 (so it may stay the same)
  shuffled_pixels   one permutation of the 1024 pixel positions (RGB kept
                    together) applied to every train AND test image
  random_pixels     a different permutation for each train image
  gaussian          each train image replaced by normal samples with that
                    image's mean and variance, rounded and clipped to 0..255

Only `labels` reads `corrupt_prob`; the image corruptions change every image of
the split they apply to. The test split is left clean except by
`shuffled_pixels`, whose permutation is a property of the input space.
"""

import dataclasses
import zlib
from typing import Callable

import numpy as np

from tfcifar import cifar10
from tfcifar.errors import UserError

NUM_PIXELS = cifar10.IMAGE_SIZE * cifar10.IMAGE_SIZE
_CHUNK = 4096  # images per block in the per-image corruptions (bounded memory)
NO_CORRUPTION = (None, "", "none")


def _rng(seed, stream):
  """A numpy Generator for (seed, stream); streams are independent."""
  key = zlib.crc32(stream.encode())
  return np.random.default_rng(np.random.SeedSequence([int(seed), key]))


def corrupt_labels(labels, prob, seed, num_classes=cifar10.NUM_CLASSES):
  """Replaces each label with probability `prob` by a uniform class."""
  labels = np.asarray(labels)
  replace = _rng(seed, "labels/replace").random(len(labels)) < prob
  drawn = _rng(seed, "labels/class").integers(0, num_classes, len(labels))
  return np.where(replace, drawn, labels).astype(labels.dtype)


def pixel_permutation(seed):
  """The one permutation of pixel positions used by `shuffled_pixels`."""
  return _rng(seed, "shuffled_pixels").permutation(NUM_PIXELS)


def permute_pixels(images, permutation):
  """Images [N, H, W, C] with pixels moved by `permutation`.

  `permutation` is [H*W] (one for all images) or [N, H*W] (one per image);
  output pixel j of an image is its input pixel permutation[j].
  """
  images = np.asarray(images)
  flat = images.reshape(len(images), -1, images.shape[-1])
  permutation = np.asarray(permutation)
  if permutation.ndim == 1:
    return flat[:, permutation].reshape(images.shape)
  return np.take_along_axis(flat, permutation[..., None], 1).reshape(
      images.shape)


def shuffle_pixels(images, seed):
  """Every image permuted by the same seed-only permutation."""
  return permute_pixels(images, pixel_permutation(seed))


def _map_chunks(images, rng, corrupt_block):
  """`corrupt_block(block, rng)` over chunks of images (bounded memory)."""
  images = np.asarray(images)
  out = np.empty_like(images)
  for start in range(0, len(images), _CHUNK):
    block = images[start:start + _CHUNK]
    out[start:start + len(block)] = corrupt_block(block, rng)
  return out


def _random_pixels_block(block, rng):
  order = np.tile(np.arange(NUM_PIXELS), (len(block), 1))
  return permute_pixels(block, rng.permuted(order, axis=1))


def _gaussian_block(block, rng):
  pixels = block.reshape(len(block), -1)
  mean = pixels.mean(1, dtype=np.float64, keepdims=True)
  std = pixels.std(1, dtype=np.float64, keepdims=True)
  samples = rng.standard_normal(pixels.shape, dtype=np.float32)
  samples *= std.astype(np.float32)
  samples += mean.astype(np.float32)
  samples = np.clip(np.rint(samples), 0, 255).astype(np.uint8)
  return samples.reshape(block.shape)


def random_pixels(images, seed):
  """Every image permuted by its own random permutation."""
  return _map_chunks(images, _rng(seed, "random_pixels"), _random_pixels_block)


def gaussian_images(images, seed):
  """Normal samples with each image's own mean and std, as uint8."""
  return _map_chunks(images, _rng(seed, "gaussian"), _gaussian_block)


def _clean(images, labels, seed, prob):
  del seed, prob
  return images, labels


@dataclasses.dataclass(frozen=True)
class Corruption:
  """A corruption: what it does to the train and to the test split.

  `train`/`test` map (images, labels, seed, prob) to (images, labels).
  """
  train: Callable
  test: Callable = _clean
  uses_prob: bool = False

  def apply(self, split, images, labels, seed, prob):
    fn = self.train if split == "train" else self.test
    return fn(images, labels, seed, prob)


def _labels(images, labels, seed, prob):
  return images, corrupt_labels(labels, prob, seed)


def _images_only(fn):
  return lambda images, labels, seed, prob: (fn(images, seed), labels)


CORRUPTIONS = {
    "labels": Corruption(train=_labels, uses_prob=True),
    "shuffled_pixels": Corruption(train=_images_only(shuffle_pixels),
                                  test=_images_only(shuffle_pixels)),
    "random_pixels": Corruption(train=_images_only(random_pixels)),
    "gaussian": Corruption(train=_images_only(gaussian_images)),
}


def is_clean(corrupt):
  return corrupt in NO_CORRUPTION


def validate_corruption(corrupt, corrupt_prob):
  """Raises UserError naming --corrupt/--corrupt_prob for a bad combination."""
  names = ", ".join(sorted(CORRUPTIONS))
  if not is_clean(corrupt) and corrupt not in CORRUPTIONS:
    raise UserError(f"--corrupt={corrupt!r} is not a corruption; choose one "
                    f"of {names} (or leave it unset)")
  try:
    prob = float(corrupt_prob)
  except (TypeError, ValueError):
    raise UserError(
        f"--corrupt_prob={corrupt_prob!r} is not a number") from None
  if not 0.0 <= prob <= 1.0:  # also rejects nan
    raise UserError(f"--corrupt_prob={corrupt_prob} must be in [0, 1]")
  if is_clean(corrupt) and prob > 0:
    raise UserError(f"--corrupt_prob={corrupt_prob} needs --corrupt=labels")
  if (not is_clean(corrupt) and not CORRUPTIONS[corrupt].uses_prob and
      prob not in (0.0, 1.0)):
    raise UserError(
        f"--corrupt_prob={corrupt_prob} applies only to --corrupt=labels; "
        f"--corrupt={corrupt} changes every train image (leave --corrupt_prob "
        "unset)")
  return prob


def corrupt_split(corrupt, split, images, labels, seed, prob):
  """(images, labels) of `split` after `corrupt` (None: unchanged)."""
  if is_clean(corrupt):
    return images, labels
  return CORRUPTIONS[corrupt].apply(split, images, labels, seed, prob)
