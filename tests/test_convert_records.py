"""What the conversion writes: TF-slim records, shards, image folders, the sample."""

import io
import os
import shutil
import tarfile

import numpy as np
from PIL import Image
import tensorflow as tf

from convert_helpers import (  # noqa: F401
    make_image_dir, expected_official, official_archive, read_split, assert_records_equal,
    assert_same_multiset, quiet_run)
from tfcifar import cifar10
from tfcifar import convert
from tfcifar.convert import tar
from tfcifar.convert import workers as workers_lib


def test_official_archive_converts_to_slim_records(tmp_path, official_archive):
  manifest = quiet_run(tmp_path / "out", archive=official_archive)
  out = str(tmp_path / "out")
  expected = expected_official()
  assert_records_equal(out, expected)
  assert sorted(os.listdir(out)) == ["cifar10_test.tfrecord",
                                     "cifar10_train.tfrecord", "labels.txt",
                                     "manifest.json"]
  with open(os.path.join(out, "labels.txt")) as f:
    assert f.read() == "".join(f"{i}:{n}\n"
                               for i, n in enumerate(cifar10.CLASS_NAMES))
  train_images, train_labels = expected["train"]
  assert manifest["splits"]["train"]["num_examples"] == len(train_labels)
  assert manifest["splits"]["train"]["class_counts"] == np.bincount(
      train_labels, minlength=10).tolist()
  pixels = train_images.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(manifest["mean"], pixels.mean(0), rtol=1e-12)
  np.testing.assert_allclose(manifest["std"], pixels.std(0), rtol=1e-9)
  assert manifest["source"].startswith("archive: ")
  assert cifar10.read_manifest(out) == manifest
  for split in cifar10.SPLITS:  # sha256 and sizes as written
    cifar10.verify_split_files(out, manifest, split,
                               cifar10.find_record_files(out, split))


def test_shards_hold_the_same_examples(tmp_path, official_archive):
  quiet_run(tmp_path / "single", archive=official_archive)
  manifest = quiet_run(tmp_path / "sharded", archive=official_archive,
                       num_shards=3)
  names = [f["name"] for f in manifest["splits"]["train"]["files"]]
  assert names == [f"cifar10_train-0000{i}-of-00003.tfrecord"
                   for i in range(3)]
  assert sum(f["num_examples"] for f in
             manifest["splits"]["train"]["files"]) == 60 + 10
  for split in cifar10.SPLITS:
    single = read_split(str(tmp_path / "single"), split)
    sharded = read_split(str(tmp_path / "sharded"), split)
    np.testing.assert_array_equal(single[0], sharded[0])
    np.testing.assert_array_equal(single[1], sharded[1])


def test_parallel_and_serial_writes_are_identical(tmp_path, official_archive,
                                                  monkeypatch):
  monkeypatch.setattr(workers_lib, "CHUNK_SIZE", 8)  # many chunks: the pool
  one = quiet_run(tmp_path / "one", archive=official_archive, num_workers=1)
  two = quiet_run(tmp_path / "two", archive=official_archive, num_workers=2)
  assert one["splits"] == two["splits"]  # names, sizes and sha256
  assert_records_equal(str(tmp_path / "two"), expected_official())


def test_batch_encoder_writes_slim_examples():
  rng = np.random.RandomState(5)
  images = rng.randint(0, 256, (6, 32, 32, 3)).astype(np.uint8)
  images[:3] //= 64  # compressible too
  labels = np.array([0, 9, 3, 3, 7, 1])
  encoded = cifar10.encode_examples(images, labels)
  assert encoded == [cifar10.encode_example(i, l)
                     for i, l in zip(images, labels)]
  for data, image, label in zip(encoded, images, labels):
    example = tf.train.Example.FromString(data)
    feature = example.features.feature
    assert feature["image/class/label"].int64_list.value == [label]
    assert feature["image/format"].bytes_list.value == [b"png"]
    assert feature["image/height"].int64_list.value == [32]
    assert feature["image/width"].int64_list.value == [32]
    png = feature["image/encoded"].bytes_list.value[0]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))),
                                  image)


def test_bundled_sample_decodes_to_its_real_images(sample_data_dir):
  members = tar.read_members(convert.SAMPLE_ARCHIVE)
  manifest = cifar10.read_manifest(sample_data_dir)
  for split, per_class in (("train", 200), ("test", 50)):
    want = [(np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB")),
             cifar10.CLASS_NAMES.index(name.split("/")[1]))
            for name, data in members.items() if name.startswith(split + "/")]
    images, labels, formats, _, _ = read_split(sample_data_dir, split)
    assert_same_multiset(images, labels, [w[0] for w in want],
                         [w[1] for w in want])
    assert manifest["splits"][split]["class_counts"] == [per_class] * 10
    assert set(formats) == {b"png"}
    # Classes are mixed in the records, not written class by class.
    assert len(set(labels[:50].tolist())) == 10


def test_image_folder_and_its_archive(tmp_path):
  root = str(tmp_path / "images")
  want = make_image_dir(root)
  manifest = quiet_run(tmp_path / "out", image_dir=root)
  assert manifest["source"] == f"image_dir: {root}"
  for split in cifar10.SPLITS:
    images, labels, _, _, _ = read_split(str(tmp_path / "out"), split)
    assert_same_multiset(images, labels, *want[split])
  # The same folders in a tar, under a root folder: the same records.
  archive = str(tmp_path / "images.tar")
  with tarfile.open(archive, "w") as f:
    f.add(root, arcname="cifar10-png")
  quiet_run(tmp_path / "from_tar", archive=archive)
  for split in cifar10.SPLITS:
    assert (cifar10.read_manifest(str(tmp_path / "from_tar"))["splits"][split]
            ["files"][0]["sha256"] == manifest["splits"][split]["files"][0]
            ["sha256"])


def test_sample_dataset_dir_converts_once(tmp_path, monkeypatch,
                                          sample_data_dir):
  monkeypatch.setenv("TFCIFAR_CACHE_DIR", str(tmp_path / "cache"))
  target = tmp_path / "cache" / "cifar10_sample"
  shutil.copytree(sample_data_dir, target)  # as if converted before
  stamp = os.stat(target / "manifest.json").st_mtime_ns
  assert convert.sample_dataset_dir() == str(target)
  assert os.stat(target / "manifest.json").st_mtime_ns == stamp  # a no-op
  os.remove(target / "cifar10_test.tfrecord")  # a damaged cache is rebuilt
  assert convert.sample_dataset_dir() == str(target)
  manifest = convert.complete_manifest(str(target))
  assert manifest["splits"] == cifar10.read_manifest(sample_data_dir)["splits"]
  assert os.listdir(tmp_path / "cache") == ["cifar10_sample"]
