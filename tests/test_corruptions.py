"""Tests of the Zhang et al. 2017 corruptions (pure functions, validation)."""

import math

import numpy as np
import pytest

from tfcifar.data import corruptions
from tfcifar.errors import UserError


def position_images(num):
  """Images whose pixel j holds (j % 256, j // 256, image index)."""
  positions = np.arange(1024)
  images = np.zeros((num, 1024, 3), np.uint8)
  images[:, :, 0] = positions % 256
  images[:, :, 1] = positions // 256
  images[:, :, 2] = np.arange(num)[:, None] % 256
  return images.reshape(num, 32, 32, 3)


def source_positions(images):
  """[N, 1024] original position of every output pixel of position_images."""
  flat = images.reshape(len(images), 1024, 3).astype(np.int64)
  return flat[:, :, 0] + 256 * flat[:, :, 1]


@pytest.mark.parametrize("prob", [0.3, 1.0])
def test_label_corruption_rate(prob):
  labels = np.arange(20000) % 10
  corrupted = corruptions.corrupt_labels(labels, prob, seed=4)
  changed = np.mean(corrupted != labels)
  rate = prob * 0.9  # a drawn class equals the true one 1 time in 10
  assert abs(changed - rate) < 4 * math.sqrt(rate * (1 - rate) / len(labels))
  counts = np.bincount(corrupted, minlength=10)
  assert len(counts) == 10 and counts.min() > 1700  # still about uniform


def test_label_corruption_is_seeded():
  labels = np.arange(5000) % 10
  first = corruptions.corrupt_labels(labels, 0.5, seed=1)
  np.testing.assert_array_equal(first,
                                corruptions.corrupt_labels(labels, 0.5, seed=1))
  assert np.mean(first != corruptions.corrupt_labels(labels, 0.5, seed=2)) > .2
  np.testing.assert_array_equal(
      corruptions.corrupt_labels(labels, 0.0, seed=1), labels)


def test_shuffled_pixels_is_one_permutation_with_rgb_kept_together():
  images = position_images(50)
  out = corruptions.shuffle_pixels(images, seed=3)
  sources = source_positions(out)
  assert sorted(sources[0]) == list(range(1024))
  assert (sources == sources[0]).all()  # the same for every image
  assert (sources[0] != np.arange(1024)).mean() > 0.99
  # the third channel (image id) moved with the other two
  np.testing.assert_array_equal(out[..., 2], images[..., 2])
  again = corruptions.shuffle_pixels(position_images(3), seed=3)
  np.testing.assert_array_equal(source_positions(again), sources[:3])
  other = corruptions.shuffle_pixels(position_images(1), seed=4)
  assert not np.array_equal(source_positions(other)[0], sources[0])


def test_random_pixels_permutes_each_image_differently():
  images = position_images(20)
  out = corruptions.random_pixels(images, seed=3)
  sources = source_positions(out)
  for row in sources:
    assert sorted(row) == list(range(1024))
  assert len({tuple(row) for row in sources}) == 20
  np.testing.assert_array_equal(out[..., 2], images[..., 2])
  np.testing.assert_array_equal(out, corruptions.random_pixels(images, seed=3))


def test_random_pixels_keeps_each_images_pixels():
  images = np.random.RandomState(0).randint(0, 256, (10, 32, 32, 3)).astype(
      np.uint8)
  out = corruptions.random_pixels(images, seed=1)
  for before, after in zip(images, out):
    assert not np.array_equal(before, after)
    key = lambda im: sorted(map(tuple, im.reshape(-1, 3)))  # noqa: E731
    assert key(before) == key(after)


def test_gaussian_matches_each_images_mean_and_std():
  rng = np.random.RandomState(0)
  means = rng.uniform(60, 190, 30)
  stds = rng.uniform(5, 50, 30)
  images = np.clip(np.rint(rng.normal(means[:, None], stds[:, None],
                                      (30, 3072))), 0, 255)
  images = images.astype(np.uint8).reshape(30, 32, 32, 3)
  out = corruptions.gaussian_images(images, seed=2)
  assert out.dtype == np.uint8
  flat_in = images.reshape(30, -1).astype(np.float64)
  flat_out = out.reshape(30, -1).astype(np.float64)
  # 3072 samples: standard error of the mean is std / 55, of the std ~1.3%.
  np.testing.assert_allclose(flat_out.mean(1), flat_in.mean(1), atol=3.0)
  np.testing.assert_allclose(flat_out.std(1), flat_in.std(1), rtol=0.06,
                             atol=0.5)
  assert (np.abs(flat_out - flat_in).mean(1) > 1).all()  # new pixels
  np.testing.assert_array_equal(out, corruptions.gaussian_images(images, 2))


def test_registry_splits():
  images = position_images(4)
  labels = np.arange(4)
  for name, corruption in corruptions.CORRUPTIONS.items():
    test_images, test_labels = corruption.apply("test", images, labels, 0, 1.0)
    np.testing.assert_array_equal(test_labels, labels)
    assert np.array_equal(test_images, images) == (name != "shuffled_pixels")


@pytest.mark.parametrize("corrupt, prob, flag", [
    ("label", 0.5, "--corrupt="),
    ("labels", 1.5, "--corrupt_prob="),
    ("labels", -0.1, "--corrupt_prob="),
    ("labels", float("nan"), "--corrupt_prob="),
    ("labels", "x", "--corrupt_prob="),
    (None, 0.5, "--corrupt_prob="),
    ("gaussian", 0.5, "--corrupt_prob="),
])
def test_bad_corruption_flags(corrupt, prob, flag):
  with pytest.raises(UserError, match=flag):
    corruptions.validate_corruption(corrupt, prob)


@pytest.mark.parametrize("corrupt, prob", [
    (None, 0.0), ("none", 0.0), ("labels", 0.0), ("labels", 1), ("gaussian", 0),
    ("random_pixels", 1.0), ("shuffled_pixels", 0.0)])
def test_good_corruption_flags(corrupt, prob):
  assert corruptions.validate_corruption(corrupt, prob) == float(prob)
