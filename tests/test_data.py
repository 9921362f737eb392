"""Tests of the tf.data input pipeline: order, seeds, sharding, errors."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcifar import cifar10
from tfcifar import data
from tfcifar.errors import DataError, UserError


def all_batches(dataset):
  """(images, labels) of every batch, concatenated, as numpy."""
  batches = [(x.numpy(), y.numpy()) for x, y in dataset]
  return (np.concatenate([b[0] for b in batches]),
          np.concatenate([b[1] for b in batches]))


def raw(data_dir, split="train", batch_size=8, **kwargs):
  """All uint8 images and labels of one pass."""
  kwargs.setdefault("shuffle", False)
  return all_batches(data.make_dataset(data_dir, split, batch_size,
                                       normalize=False, **kwargs))


def indices_of(images, originals):
  """Index in `originals` of every image (synthetic images are unique)."""
  lookup = {image.tobytes(): i for i, image in enumerate(originals)}
  return np.array([lookup[image.tobytes()] for image in images])


# --- order, shapes, sizes ----------------------------------------------------


def test_record_order_and_dtypes(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=40, num_test=21)
  dataset = data.make_dataset(data_dir, "test", 8, normalize=False,
                              shuffle=False)
  assert dataset.element_spec[0].dtype == tf.uint8
  assert dataset.element_spec[1].dtype == tf.int32
  images, labels = all_batches(dataset)
  np.testing.assert_array_equal(images, splits["test"][0])  # all 21, in order
  np.testing.assert_array_equal(labels, splits["test"][1])
  images, labels = raw(data_dir, "train", 16)  # train drops the remainder
  np.testing.assert_array_equal(images, splits["train"][0][:32])
  train = data.make_dataset(data_dir, "train", 16)
  assert train.element_spec[0].shape.as_list() == [16, 32, 32, 3]
  assert data.split_size(data_dir, "test") == 21
  assert data.steps_per_epoch(data_dir, "train", 16) == 2
  assert data.steps_per_epoch(data_dir, "test", 8) == 3


def test_max_examples_takes_the_first(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=40)
  assert data.split_size(data_dir, "train", max_examples=12) == 12
  assert data.split_size(data_dir, "train", max_examples=400) == 40
  images, _ = raw(data_dir, "train", 4, max_examples=12, shuffle=True)
  assert sorted(indices_of(images, splits["train"][0])) == list(range(12))


def test_shuffle_is_a_pure_function_of_seed_and_epoch(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=64)
  originals = splits["train"][0]

  def order(seed, epoch):
    return indices_of(raw(data_dir, shuffle=True, seed=seed, epoch=epoch)[0],
                      originals)

  first = order(1, 0)
  assert sorted(first) == list(range(64))
  assert not np.array_equal(first, np.arange(64))
  np.testing.assert_array_equal(first, order(1, 0))
  assert not np.array_equal(first, order(1, 1))
  assert not np.array_equal(first, order(2, 0))


def test_repeat_continues_with_the_next_epochs(make_synthetic_dataset):
  """A run resumed at epoch e sees the batches of an uninterrupted run."""
  data_dir, _ = make_synthetic_dataset(num_train=24)
  kwargs = dict(augment=True, seed=3, normalize=False)
  repeated = data.make_dataset(data_dir, "train", 8, repeat=True, epoch=1,
                               **kwargs)
  images, labels = all_batches(repeated.take(6))  # epochs 1 and 2
  for epoch in (1, 2):
    part = slice((epoch - 1) * 24, epoch * 24)
    want_images, want_labels = all_batches(data.make_dataset(
        data_dir, "train", 8, epoch=epoch, **kwargs))
    np.testing.assert_array_equal(images[part], want_images)
    np.testing.assert_array_equal(labels[part], want_labels)


def test_sharded_and_single_file_give_the_same_examples(
    make_synthetic_dataset):
  single, _ = make_synthetic_dataset(num_train=30, name="single")
  sharded, _ = make_synthetic_dataset(num_train=30, num_shards=4,
                                      name="sharded")
  assert len(cifar10.find_record_files(sharded, "train")) == 4
  for kwargs in (dict(), dict(shuffle=True, seed=5, augment=True)):
    one = raw(single, "train", 5, **kwargs)
    four = raw(sharded, "train", 5, **kwargs)
    np.testing.assert_array_equal(one[0], four[0])
    np.testing.assert_array_equal(one[1], four[1])


def test_input_context_parts_are_disjoint_and_complete(
    make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=40, num_test=23)
  contexts = [tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=i,
                                         num_replicas_in_sync=2)
              for i in range(2)]
  # test: every example exactly once over the workers, batches of 8 / 2
  parts = [raw(data_dir, "test", 8, input_context=c) for c in contexts]
  found = np.concatenate([indices_of(p[0], splits["test"][0]) for p in parts])
  assert sorted(found) == list(range(23))
  # train: worker i gets the i-th half of every global batch of 8 of the one
  # global shuffled order (what replica i of Mirrored gets)
  glob = indices_of(raw(data_dir, "train", 40, shuffle=True, seed=7)[0],
                    splits["train"][0])
  for i, context in enumerate(contexts):
    dataset = data.make_dataset(data_dir, "train", 8, normalize=False,
                                seed=7, input_context=context)
    assert dataset.element_spec[0].shape[0] == 4
    images, _ = all_batches(dataset)
    np.testing.assert_array_equal(indices_of(images, splits["train"][0]),
                                  glob.reshape(5, 2, 4)[:, i].ravel())


@pytest.mark.parametrize("pipelines, replicas", [(1, 2), (2, 2), (2, 4)])
def test_epochs_are_whole_global_batches_under_distribution(
    make_synthetic_dataset, pipelines, replicas):
  """30 images, global batch 8: 3 steps per epoch on any replica layout.

  Every worker's epoch is exactly its share of those 3 steps, and together
  they cover the first 24 examples of the epoch's one global order: the 6
  leftover images never spill into the next epoch.
  """
  data_dir, splits = make_synthetic_dataset(num_train=30)
  per_replica, local = 8 // replicas, replicas // pipelines
  for epoch in (0, 1):
    glob = indices_of(raw(data_dir, "train", 30, shuffle=True, seed=3,
                          epoch=epoch)[0], splits["train"][0])
    found = []
    for i in range(pipelines):
      context = tf.distribute.InputContext(pipelines, i, replicas)
      repeated = data.make_dataset(data_dir, "train", 8, normalize=False,
                                   seed=3, repeat=True, input_context=context)
      batches = list(repeated.skip(epoch * 3 * local).take(3 * local))
      assert all(len(b[1]) == per_replica for b in batches)
      found.append(indices_of(np.concatenate([b[0] for b in batches]),
                              splits["train"][0]))
    np.testing.assert_array_equal(np.sort(np.concatenate(found)),
                                  np.sort(glob[:24]))
    # replica r of any layout gets glob[s*8 + r*per_replica:][:per_replica]
    replica_batches = np.concatenate(found).reshape(pipelines, 3, local,
                                                    per_replica)
    np.testing.assert_array_equal(
        replica_batches.transpose(1, 0, 2, 3).ravel(), glob[:24])


@pytest.mark.parametrize("pipelines, replicas", [(1, 2), (2, 2), (2, 4)])
def test_augmentation_is_the_same_on_any_replica_layout(
    make_synthetic_dataset, pipelines, replicas):
  """Replica r's batch of global step s equals rows [r*b, (r+1)*b) of the
  one-device batch s, pixel for pixel, with crop+flip, AutoAugment and
  Cutout all on: each image gets the same random parameters wherever it is
  trained."""
  data_dir, _ = make_synthetic_dataset(num_train=30)
  options = dict(augment=True, autoaugment=True, cutout=8, seed=5, epoch=1)
  one_device = all_batches(data.make_dataset(data_dir, "train", 8,
                                             **options))[0]
  per_replica, local = 8 // replicas, replicas // pipelines
  found = []
  for i in range(pipelines):
    context = tf.distribute.InputContext(pipelines, i, replicas)
    images = all_batches(data.make_dataset(data_dir, "train", 8,
                                           input_context=context,
                                           **options))[0]
    found.append(images.reshape(3, local, per_replica, 32, 32, 3))
  np.testing.assert_array_equal(
      np.stack(found, axis=1).reshape(24, 32, 32, 3), one_device)
  # (a control: another seed augments differently)
  other = all_batches(data.make_dataset(data_dir, "train", 8,
                                        **dict(options, seed=6)))[0]
  assert not np.array_equal(np.sort(other, axis=None),
                            np.sort(one_device, axis=None))


def test_distribute_datasets_from_function(make_synthetic_dataset):
  data_dir, _ = make_synthetic_dataset(num_train=32)
  strategy = tf.distribute.get_strategy()
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: data.make_dataset(data_dir, "train", 16, input_context=ctx))
  batches = list(dist)
  assert len(batches) == 2 and batches[0][0].shape == (16, 32, 32, 3)


# --- normalization -----------------------------------------------------------


def test_normalizations(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=32, num_test=16)
  mean, std = data.normalization_stats(data_dir)
  want_mean, want_std = cifar10.channel_stats(splits["train"][0])
  np.testing.assert_allclose(mean, want_mean)
  np.testing.assert_allclose(std, want_std)
  pixels = splits["test"][0].astype(np.float32)
  for normalization, expected in (
      ("standardize", (pixels - np.float32(mean)) / np.float32(std)),
      ("unit", pixels / 255)):
    for jit_compile in (True, False):
      images, _ = all_batches(data.make_dataset(
          data_dir, "test", 16, shuffle=False, normalization=normalization,
          jit_compile=jit_compile))
      assert images.dtype == np.float32
      np.testing.assert_allclose(images, expected, rtol=1e-5, atol=1e-5)


def test_stats_without_manifest_come_from_the_train_split(
    make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=32)
  os.remove(os.path.join(data_dir, cifar10.MANIFEST_FILENAME))
  mean, std = data.normalization_stats(data_dir)
  want_mean, want_std = cifar10.channel_stats(splits["train"][0])
  np.testing.assert_allclose(mean, want_mean)
  np.testing.assert_allclose(std, want_std)


@pytest.mark.parametrize("techniques", [{}, dict(autoaugment=True, cutout=8)])
def test_compiled_and_plain_pipelines_agree(make_synthetic_dataset,
                                            techniques):
  data_dir, _ = make_synthetic_dataset(num_train=32)
  kwargs = dict(augment=True, seed=4, shuffle=True, **techniques)
  compiled = all_batches(data.make_dataset(data_dir, "train", 16, **kwargs))
  plain = all_batches(data.make_dataset(data_dir, "train", 16,
                                        jit_compile=False, **kwargs))
  np.testing.assert_allclose(compiled[0], plain[0], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(compiled[1], plain[1])


# --- corruptions in the pipeline ---------------------------------------------


def test_label_corruption_is_fixed_per_seed(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=400, num_test=40)
  clean = splits["train"][1]

  def labels(seed=0, epoch=0, split="train", **kwargs):
    return raw(data_dir, split, 40, corrupt="labels", corrupt_prob=0.5,
               seed=seed, epoch=epoch, **kwargs)[1]

  first = labels()
  rate = np.mean(first != clean)  # 0.45 expected; 4 sigma over 400 = 0.1
  assert abs(rate - 0.45) < 0.1
  np.testing.assert_array_equal(first, labels(epoch=1))  # same every epoch
  data.clear_cache()  # a second run in a fresh process
  np.testing.assert_array_equal(first, labels())
  assert np.mean(first != labels(seed=1)) > 0.2
  # example i's label does not depend on max_examples
  np.testing.assert_array_equal(first[:40], labels(max_examples=40))
  np.testing.assert_array_equal(labels(split="test"), splits["test"][1])


def test_image_corruptions_in_the_pipeline(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=16, num_test=8)
  train_images, test_images = splits["train"][0], splits["test"][0]
  for corrupt in ("random_pixels", "gaussian"):
    images, labels = raw(data_dir, "train", 8, corrupt=corrupt, seed=1)
    assert not (images == train_images).all(axis=(1, 2, 3)).any()
    np.testing.assert_array_equal(labels, splits["train"][1])
    test, _ = raw(data_dir, "test", 8, corrupt=corrupt, seed=1)
    np.testing.assert_array_equal(test, test_images)  # the test split is clean


def test_shuffled_pixels_shares_one_permutation_with_the_test_split(
    make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=8, num_test=8)
  permutations = []
  for split in ("train", "test"):
    images, _ = raw(data_dir, split, 8, corrupt="shuffled_pixels", seed=2)
    for out, original in zip(images, splits[split][0]):
      # Pixel colours of random images are almost always unique: find where
      # each unique output pixel came from.
      pixels = [tuple(p) for p in original.reshape(-1, 3)]
      unique = {p: j for j, p in enumerate(pixels) if pixels.count(p) == 1}
      out_pixels = [tuple(p) for p in out.reshape(-1, 3)]
      permutations.append({j: unique[p] for j, p in enumerate(out_pixels)
                           if p in unique})
  reference = permutations[0]
  assert len(reference) > 900 and any(j != k for j, k in reference.items())
  for permutation in permutations[1:]:
    common = set(permutation) & set(reference)
    assert len(common) > 800
    assert all(permutation[j] == reference[j] for j in common)


def test_corruption_with_augmentation(make_synthetic_dataset):
  data_dir, _ = make_synthetic_dataset(num_train=16)
  corrupted, _ = raw(data_dir, "train", 8, corrupt="random_pixels", seed=1)
  augmented, _ = raw(data_dir, "train", 8, corrupt="random_pixels", seed=1,
                     augment=True)
  assert augmented.shape == corrupted.shape
  for out, image in zip(augmented, corrupted):  # crops of corrupted images
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    windows = [padded[r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
    assert any(np.array_equal(out, w) or np.array_equal(out, w[:, ::-1])
               for w in windows)


# --- real data --------------------------------------------------------------


def test_real_sample(sample_data_dir):
  manifest = cifar10.read_manifest(sample_data_dir)
  assert data.split_size(sample_data_dir, "train") == 2000
  images, labels = all_batches(data.make_dataset(
      sample_data_dir, "test", 100, shuffle=False))
  assert images.shape == (500, 32, 32, 3)
  assert np.bincount(labels, minlength=10).tolist() == (
      manifest["splits"]["test"]["class_counts"])
  # standardized with its own train stats, the train split has mean 0, std 1
  train, _ = all_batches(data.make_dataset(sample_data_dir, "train", 500,
                                           shuffle=False))
  np.testing.assert_allclose(train.reshape(-1, 3).mean(0), 0, atol=1e-3)
  np.testing.assert_allclose(train.reshape(-1, 3).std(0), 1, atol=1e-3)


# --- bad input --------------------------------------------------------------


def write_plain_records(data_dir, images, labels, split="train"):
  """Records without a manifest, as TF-slim's converter writes them."""
  os.makedirs(data_dir, exist_ok=True)
  path = os.path.join(data_dir, cifar10.record_filename(split))
  os.replace(cifar10.write_records(path, images, labels), path)
  return path


def test_missing_and_empty_data_dirs(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    data.make_dataset(str(tmp_path / "nope"))
  with pytest.raises(DataError, match="no train records"):
    data.split_size(str(tmp_path), "train")


def test_truncated_record(tmp_path, make_synthetic_dataset):
  _, splits = make_synthetic_dataset(num_train=20)
  path = write_plain_records(str(tmp_path / "d"), *splits["train"])
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - 100)
  with pytest.raises(DataError, match="cifar10_train.tfrecord: corrupt or "
                     "truncated"):
    data.make_dataset(str(tmp_path / "d"))


def test_wrong_image_shape(tmp_path):
  images = [np.zeros((32, 32, 3), np.uint8)] * 3 + [
      np.zeros((28, 32, 3), np.uint8)]
  write_plain_records(str(tmp_path), images, [0, 1, 2, 3])
  with pytest.raises(DataError, match="record 3 holds a 28x32x3 image"):
    data.split_size(str(tmp_path), "train")


def test_label_out_of_range(tmp_path):
  write_plain_records(str(tmp_path), np.zeros((3, 32, 32, 3), np.uint8),
                      [0, 10, 2])
  with pytest.raises(DataError, match="record 1 has label 10"):
    data.make_dataset(str(tmp_path))


def test_record_that_is_not_an_example(tmp_path):
  path = os.path.join(str(tmp_path), cifar10.record_filename("train"))
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(b"not a tf.train.Example")
  with pytest.raises(DataError, match="corrupt or truncated record"):
    data.split_size(str(tmp_path), "train")


def test_manifest_that_does_not_match(make_synthetic_dataset):
  data_dir, _ = make_synthetic_dataset(num_train=20)
  path = os.path.join(data_dir, cifar10.record_filename("train"))
  with open(path, "r+b") as f:  # same size, other bytes
    f.seek(200)
    byte = f.read(1)
    f.seek(200)
    f.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(DataError, match="sha256"):
    data.make_dataset(data_dir)
  manifest_path = os.path.join(data_dir, cifar10.MANIFEST_FILENAME)
  with open(manifest_path) as f:
    manifest = json.load(f)
  manifest["splits"]["test"]["num_examples"] += 1
  cifar10.write_text_atomic(manifest_path, json.dumps(manifest))
  with pytest.raises(DataError, match="manifest says 33"):
    data.make_dataset(data_dir, "test")


@pytest.mark.parametrize("kwargs, message", [
    (dict(corrupt="labelz"), "--corrupt="),
    (dict(corrupt="labels", corrupt_prob=2.0), "--corrupt_prob="),
    (dict(split="validation"), "split="),
    (dict(batch_size=0), "--batch_size="),
    (dict(batch_size=500), "larger than the 20 train examples"),
    (dict(normalization="minmax"), "--normalization="),
    (dict(max_examples=0), "--max_examples="),
    (dict(seed=-1), "--seed="),
])
def test_bad_arguments(make_synthetic_dataset, kwargs, message):
  data_dir, _ = make_synthetic_dataset(num_train=20)
  with pytest.raises(UserError, match=message):
    data.make_dataset(data_dir, **kwargs)
