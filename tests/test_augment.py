"""Tests of the crop-and-flip augmentation, alone and inside the pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from tfcifar import data
from tfcifar.data import augment


def candidate_windows(image, pad=4):
  """{(row, col, flipped): window} of numpy's reflect padding of `image`."""
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  size = image.shape[0]
  windows = {}
  for row in range(2 * pad + 1):
    for col in range(2 * pad + 1):
      window = padded[row:row + size, col:col + size]
      windows[(row, col, False)] = window
      windows[(row, col, True)] = window[:, ::-1]
  return windows


def matching_window(output, original):
  """The (row, col, flipped) whose window equals `output`, else None."""
  for key, window in candidate_windows(original).items():
    if np.array_equal(window, output):
      return key
  return None


def random_images(num, seed=0):
  return np.random.RandomState(seed).randint(
      0, 256, (num, 32, 32, 3)).astype(np.uint8)


def test_reflect_index_is_numpy_reflect_padding():
  positions = np.arange(-4, 36)
  expected = np.pad(np.arange(32), 4, mode="reflect")
  got = augment.reflect_index(tf.constant(positions), 32).numpy()
  np.testing.assert_array_equal(got, expected)


def test_outputs_are_windows_of_the_reflect_padded_image():
  images = random_images(48)
  out = augment.augment_batch(images, tf.constant([3, 4])).numpy()
  assert out.shape == images.shape and out.dtype == np.uint8
  keys = [matching_window(o, i) for o, i in zip(out, images)]
  assert None not in keys
  # tf.pad REFLECT is the padding the issue names: same windows.
  padded = tf.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
  for (row, col, flipped), o, p in zip(keys, out, padded.numpy()):
    window = p[row:row + 32, col:col + 32]
    np.testing.assert_array_equal(o, window[:, ::-1] if flipped else window)


def test_flips_about_half_and_offsets_cover_the_padding():
  images = random_images(1000, seed=1)
  out = augment.augment_batch(images, tf.constant([0, 9])).numpy()
  keys = [matching_window(o, i) for o, i in zip(out, images)]
  flips = sum(k[2] for k in keys)
  assert abs(flips - 500) < 4 * np.sqrt(250)  # Binomial(1000, 0.5), 4 sigma
  rows = np.bincount([k[0] for k in keys], minlength=9)
  cols = np.bincount([k[1] for k in keys], minlength=9)
  for counts in (rows, cols):  # 9 offsets, each about 111 times
    assert len(counts) == 9 and counts.min() > 60


def test_same_seed_same_output_other_seed_different():
  images = random_images(32)
  first = augment.augment_batch(images, tf.constant([1, 2])).numpy()
  again = augment.augment_batch(images, tf.constant([1, 2])).numpy()
  other = augment.augment_batch(images, tf.constant([1, 3])).numpy()
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


def test_compiled_crop_flip_equals_eager():
  images = tf.constant(random_images(64, seed=2))
  rows, cols, flip = augment.crop_flip_params(64, tf.constant([5, 7]))
  eager = augment.crop_flip(images, rows, cols, flip)
  compiled = tf.function(augment.crop_flip, jit_compile=True)(
      images, rows, cols, flip)
  np.testing.assert_array_equal(eager.numpy(), compiled.numpy())


def test_static_shape_is_kept():
  spec = tf.TensorSpec([16, 32, 32, 3], tf.uint8)
  fn = tf.function(augment.augment_batch).get_concrete_function(
      spec, tf.TensorSpec([2], tf.int64))
  assert fn.structured_outputs.shape.as_list() == [16, 32, 32, 3]


def _all_batches(dataset):
  images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
  return np.concatenate(images), np.concatenate(labels)


def test_pipeline_augments_train_only(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=40, num_test=20)
  images, labels = _all_batches(data.make_dataset(
      data_dir, "train", 8, augment=True, normalize=False, shuffle=False,
      seed=5))
  train_images, train_labels = splits["train"]
  np.testing.assert_array_equal(labels, train_labels)
  keys = [matching_window(o, i) for o, i in zip(images, train_images)]
  assert None not in keys
  assert len(set(keys)) > 10  # not the same window every time
  test_images, _ = _all_batches(data.make_dataset(
      data_dir, "test", 8, augment=True, normalize=False, shuffle=False))
  np.testing.assert_array_equal(test_images, splits["test"][0])


@pytest.mark.parametrize("jit_compile", [True, False])
def test_pipeline_augmentation_is_seeded_per_epoch(make_synthetic_dataset,
                                                   jit_compile):
  data_dir, _ = make_synthetic_dataset(num_train=32)

  def epoch_images(epoch, seed=1):
    return _all_batches(data.make_dataset(
        data_dir, "train", 16, augment=True, normalize=False, shuffle=False,
        seed=seed, epoch=epoch, jit_compile=jit_compile))[0]

  np.testing.assert_array_equal(epoch_images(0), epoch_images(0))
  assert not np.array_equal(epoch_images(0), epoch_images(1))
  assert not np.array_equal(epoch_images(0), epoch_images(0, seed=2))
