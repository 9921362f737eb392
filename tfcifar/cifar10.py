"""The on-disk CIFAR-10 format: TF-slim TFRecords, labels.txt and manifest.json.

This module is the one place that knows file names, the feature spec and the
manifest schema. The conversion tool (`tfcifar.convert`) writes this format and
the input pipeline (`tfcifar.data`) reads it.

Layout of a dataset directory:
  cifar10_train.tfrecord, cifar10_test.tfrecord       (TF-slim, the default), or
  cifar10_train-00000-of-00004.tfrecord, ...          (--num_shards=4)
  labels.txt      `0:airplane` ... `9:truck`
  manifest.json   counts per split and class, sha256 of each file, and the
                  per-channel mean/std of the train pixels (0..255 units)

Each record is a `tf.train.Example` exactly as TF-slim's
download_and_convert_cifar10.py writes it:
  image/encoded       PNG bytes of the 32x32x3 uint8 image
  image/format        b'png'
  image/class/label   int64
  image/height        32
  image/width         32
"""

import concurrent.futures
import hashlib
import json
import os
import re
import struct
import zlib

import numpy as np

from tfcifar.errors import DataError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
               "horse", "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 32
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
SPLITS = ("train", "test")
FULL_SPLIT_SIZES = {"train": 50000, "test": 10000}

LABELS_FILENAME = "labels.txt"
MANIFEST_FILENAME = "manifest.json"
MANIFEST_FORMAT = "tfcifar-cifar10-tfrecord/1"
_SHARD_RE = re.compile(r"^cifar10_(train|test)-(\d{5})-of-(\d{5})\.tfrecord$")
_RECORD_RE = re.compile(r"^cifar10_(train|test)(-\d{5}-of-\d{5})?\.tfrecord$")


def record_filename(split, shard=0, num_shards=1):
  """`cifar10_train.tfrecord`, or `cifar10_train-00001-of-00004.tfrecord`."""
  if num_shards == 1:
    return f"cifar10_{split}.tfrecord"
  return f"cifar10_{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def feature_spec():
  """The TF-slim parsing spec (tf imported lazily: the writer needs no graph)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {
      "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
      "image/format": tf.io.FixedLenFeature((), tf.string, default_value="png"),
      "image/class/label": tf.io.FixedLenFeature(
          [], tf.int64, default_value=tf.zeros([], dtype=tf.int64)),
      "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=32),
      "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=32),
  }


# --- writing ---------------------------------------------------------------


def _png_chunk(tag, data):
  crc = zlib.crc32(tag + data) & 0xFFFFFFFF
  return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def encode_png(image, compression=6):
  """PNG bytes of an HxWx3 uint8 image (8-bit RGB, no filter), pure Python."""
  image = np.asarray(image, dtype=np.uint8)
  height, width, _ = image.shape
  rows = np.zeros((height, 1 + width * 3), np.uint8)  # filter byte 0 per row
  rows[:, 1:] = image.reshape(height, width * 3)
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) +
          _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), compression)) +
          _png_chunk(b"IEND", b""))


def _varint(value):
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number, wire_type, payload):
  """One protobuf field; payload is bytes (wire type 2) or an int (type 0)."""
  key = _varint((number << 3) | wire_type)
  if wire_type == 0:
    return key + _varint(payload)
  return key + _varint(len(payload)) + payload


def _feature_entry(name, feature):
  # Features.feature is map<string, Feature>: entries are (1: key, 2: value).
  entry = _field(1, 2, name.encode()) + _field(2, 2, feature)
  return _field(1, 2, entry)


def _bytes_feature(value):
  return _field(1, 2, _field(1, 2, value))  # Feature.bytes_list.value


def _int64_feature(value):
  return _field(3, 2, _field(1, 0, value))  # Feature.int64_list.value


def serialize_example(png_bytes, label, height=IMAGE_SIZE, width=IMAGE_SIZE):
  """A serialised `tf.train.Example` in the TF-slim layout.

  Hand-encoded protobuf (identical to `tf.train.Example(...).SerializeToString()`
  up to map ordering, which parsers ignore); about 10x faster than building
  the proto objects, which matters when 60,000 are written in seconds.
  """
  features = (
      _feature_entry("image/encoded", _bytes_feature(png_bytes)) +
      _feature_entry("image/format", _bytes_feature(b"png")) +
      _feature_entry("image/class/label", _int64_feature(int(label))) +
      _feature_entry("image/height", _int64_feature(height)) +
      _feature_entry("image/width", _int64_feature(width)))
  return _field(1, 2, features)  # Example.features


def encode_example(image, label):
  """Serialised Example bytes for one uint8 HxWx3 image and its label."""
  image = np.asarray(image)
  return serialize_example(encode_png(image), label, image.shape[0],
                           image.shape[1])


def encode_examples(images, labels, compression=6):
  """[encode_example(image, label) ...] for uint8 images [N, H, W, 3].

  The same bytes, ~2x faster: the PNG rows of all images are laid out in one
  numpy operation, and everything but the pixels and the label is encoded
  once. What remains per image is zlib (~100 us for 32x32) and a few joins.
  """
  images = np.asarray(images, dtype=np.uint8)
  num, height, width, _ = images.shape
  rows = np.zeros((num, height, 1 + width * 3), np.uint8)  # filter byte 0
  rows[:, :, 1:] = images.reshape(num, height, width * 3)
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  png_head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
  png_tail = _png_chunk(b"IEND", b"")
  after_png = {}  # label -> the encoded features after image/encoded
  out = []
  for image_rows, label in zip(rows, np.asarray(labels).tolist()):
    data = b"IDAT" + zlib.compress(image_rows.tobytes(), compression)
    png = b"".join((png_head, struct.pack(">I", len(data) - 4), data,
                    struct.pack(">I", zlib.crc32(data)), png_tail))
    rest = after_png.get(label)
    if rest is None:
      rest = after_png[label] = (
          _feature_entry("image/format", _bytes_feature(b"png")) +
          _feature_entry("image/class/label", _int64_feature(int(label))) +
          _feature_entry("image/height", _int64_feature(height)) +
          _feature_entry("image/width", _int64_feature(width)))
    out.append(_field(1, 2, _feature_entry("image/encoded",
                                           _bytes_feature(png)) + rest))
  return out


def write_labels_file(dataset_dir, class_names=CLASS_NAMES):
  """Writes `labels.txt` (`0:airplane` ...) atomically."""
  text = "".join(f"{i}:{name}\n" for i, name in enumerate(class_names))
  write_text_atomic(os.path.join(dataset_dir, LABELS_FILENAME), text)


def write_text_atomic(path, text):
  """Writes `path` via a temporary name and a rename."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


# --- reading ---------------------------------------------------------------


def read_labels_file(dataset_dir):
  """{id: name} from labels.txt."""
  path = os.path.join(dataset_dir, LABELS_FILENAME)
  names = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        index, name = line.strip().split(":", 1)
        names[int(index)] = name
  return names


def find_record_files(data_dir, split):
  """The record files of `split`, in order: the single slim file or all shards.

  Raises DataError when the directory holds none, both layouts, or an
  incomplete set of shards.
  """
  if not os.path.isdir(data_dir):
    raise DataError(f"data dir {data_dir} does not exist")
  single = os.path.join(data_dir, record_filename(split))
  shards = {}
  for name in os.listdir(data_dir):
    match = _SHARD_RE.match(name)
    if match and match.group(1) == split:
      shards.setdefault(int(match.group(3)), []).append(name)
  if os.path.exists(single) and shards:
    raise DataError(f"{data_dir} holds both {record_filename(split)} and "
                    f"{split} shards; remove one layout")
  if os.path.exists(single):
    return [single]
  if not shards:
    raise DataError(
        f"no {split} records in {data_dir} (expected {record_filename(split)} "
        "or shards); convert the data with tfcifar-convert")
  if len(shards) > 1:
    raise DataError(f"{data_dir} mixes {split} shard sets of sizes "
                    f"{sorted(shards)}")
  (num_shards, names), = shards.items()
  expected = [record_filename(split, i, num_shards) for i in range(num_shards)]
  missing = sorted(set(expected) - set(names))
  if missing:
    raise DataError(f"{data_dir} is missing {split} shard {missing[0]}")
  return [os.path.join(data_dir, name) for name in expected]


def file_digest(path, algorithm="sha256", chunk_size=1 << 20):
  """The hex digest of a file: sha256 for the manifest, md5 for downloads."""
  digest = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk_size), b""):
      digest.update(block)
  return digest.hexdigest()


def read_json_object(path, error=DataError):
  """The JSON object (dict) in `path`; `error` (a UserError) if it is not
  valid JSON or not an object."""
  try:
    with open(path) as f:
      value = json.load(f)
  except ValueError as e:
    raise error(f"{path} is not valid JSON: {e}") from None
  if not isinstance(value, dict):
    raise error(f"{path} is not a JSON object")
  return value


def read_manifest(data_dir):
  """The manifest dict, or None where the directory has none (plain slim data)."""
  path = os.path.join(data_dir, MANIFEST_FILENAME)
  if not os.path.exists(path):
    return None
  manifest = read_json_object(path)
  if manifest.get("format") != MANIFEST_FORMAT:
    raise DataError(f"{path} has format {manifest.get('format')!r}, expected "
                    f"{MANIFEST_FORMAT!r}")
  return manifest


def verify_split_files(data_dir, manifest, split, files, checksums=True):
  """Checks that `files` are exactly the files the manifest lists for `split`.

  Compares names and sizes always, sha256 when `checksums`. Raises DataError
  naming the first file that does not match.
  """
  entry = manifest.get("splits", {}).get(split)
  if entry is None:
    raise DataError(f"manifest in {data_dir} has no {split} split")
  listed = {f["name"]: f for f in entry["files"]}
  names = [os.path.basename(p) for p in files]
  if sorted(names) != sorted(listed):
    raise DataError(f"{split} files in {data_dir} ({', '.join(names)}) do not "
                    f"match the manifest ({', '.join(sorted(listed))})")
  for path in files:
    want = listed[os.path.basename(path)]
    size = os.path.getsize(path)
    if "bytes" in want and size != want["bytes"]:
      raise DataError(f"{path} has {size} bytes, manifest says {want['bytes']}")
    if checksums and file_digest(path) != want["sha256"]:
      raise DataError(f"{path} does not match its sha256 in the manifest")
  return entry


# --- a whole dataset -------------------------------------------------------


def channel_stats(images):
  """Per-channel mean and std (0..255 units) of uint8 images [N, H, W, 3].

  The sums are exact: float32 column sums over blocks of 256 images stay below
  2**24 (256 * 255**2), and the block sums add up exactly in float64.
  """
  images = np.asarray(images)
  flat = images.reshape(len(images), -1)
  total = np.zeros(flat.shape[1])
  total_sq = np.zeros(flat.shape[1])
  for start in range(0, len(flat), 256):
    block = flat[start:start + 256].astype(np.float32)
    total += block.sum(0)
    block *= block
    total_sq += block.sum(0)
  count = flat.size // 3
  mean = total.reshape(-1, 3).sum(0) / count
  mean_sq = total_sq.reshape(-1, 3).sum(0) / count
  std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
  return mean.tolist(), std.tolist()


def write_records(path, images, labels):
  """Writes one TFRecord file of `(image, label)` examples via a temp name."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tmp = f"{path}.incomplete"
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      for image, label in zip(images, labels):
        writer.write(encode_example(image, label))
  except BaseException:
    remove_if_exists(tmp)
    raise
  return tmp


def remove_if_exists(path):
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def record_file_split(name):
  """'train' or 'test' for a record file name (single or shard), else None."""
  match = _RECORD_RE.match(name)
  return match.group(1) if match else None


def write_dataset(dataset_dir, splits, num_shards=1, source="", write=None):
  """Writes records, labels.txt and manifest.json for `splits`.

  Args:
    dataset_dir: output directory (created).
    splits: {split: (uint8 images [N, 32, 32, 3], int labels [N])}.
    num_shards: 1 for the two TF-slim files, else N shards per split.
    source: free text recorded in the manifest.
    write: optional `write(path, images, labels) -> tmp_path` (a parallel
      writer); defaults to `write_records`. It removes its own temp file when
      it fails.

  Every file is written under a temporary name; all are renamed only once all
  are complete, and the manifest last, so an interrupted run leaves nothing
  that looks finished. A failure removes the temp files. An old manifest is
  removed before the renames, and record files of another layout (e.g. the
  single files when writing shards) before the new manifest is written.
  """
  write = write or write_records
  os.makedirs(dataset_dir, exist_ok=True)
  manifest = {"format": MANIFEST_FORMAT, "source": source, "splits": {}}
  renames = []
  stats = None
  if "train" in splits:  # numpy releases the GIL: overlaps the writing
    stats = concurrent.futures.ThreadPoolExecutor(1)
    train_stats = stats.submit(channel_stats, splits["train"][0])
  try:
    for split, (images, labels) in splits.items():
      labels = np.asarray(labels, np.int64)
      files = []
      for shard, index in enumerate(np.array_split(np.arange(len(labels)),
                                                   num_shards)):
        name = record_filename(split, shard, num_shards)
        path = os.path.join(dataset_dir, name)
        tmp = write(path, images[index[0]:index[-1] + 1] if len(index) else
                    images[:0], labels[index])
        renames.append((tmp, path))
        files.append({"name": name, "num_examples": int(len(index)),
                      "bytes": os.path.getsize(tmp),
                      "sha256": file_digest(tmp)})
      manifest["splits"][split] = {
          "num_examples": int(len(labels)),
          "class_counts": np.bincount(labels, minlength=NUM_CLASSES).tolist(),
          "files": files,
      }
    if stats is not None:
      manifest["mean"], manifest["std"] = train_stats.result()
  except BaseException:
    for tmp, _ in renames:
      remove_if_exists(tmp)
    raise
  finally:
    if stats is not None:
      stats.shutdown(cancel_futures=True)
  remove_if_exists(os.path.join(dataset_dir, MANIFEST_FILENAME))
  for tmp, path in renames:
    os.replace(tmp, path)
  written = {os.path.basename(path) for _, path in renames}
  for name in os.listdir(dataset_dir):  # the other layout's files
    if record_file_split(name) in splits and name not in written:
      os.remove(os.path.join(dataset_dir, name))
  write_labels_file(dataset_dir)
  write_text_atomic(os.path.join(dataset_dir, MANIFEST_FILENAME),
                    json.dumps(manifest, indent=1) + "\n")
  return manifest
