"""Reading and checking a split: records -> decoded uint8 arrays, cached.

A split is read once: the record files are parsed and their PNGs decoded in
parallel by tf.data, every example is checked (decodable, 32x32x3, label in
0..9), the files are checked against manifest.json (names, sizes, sha256,
counts), and the decoded arrays are kept in an in-process cache keyed by the
directory, the split and the files' sizes and mtimes. 50,000 images are 150 MB.
"""

import dataclasses
import os
import re
import threading

import numpy as np
import tensorflow as tf

from tfcifar import cifar10
from tfcifar.errors import DataError

_DECODE_BATCH = 4096

_lock = threading.RLock()
_splits = {}  # (data_dir, split) -> (signature, SplitData)


@dataclasses.dataclass(frozen=True)
class SplitData:
  """A decoded split: uint8 images [N, 32, 32, 3] and int64 labels [N]."""
  images: np.ndarray
  labels: np.ndarray
  files: tuple

  def __len__(self):
    return len(self.labels)


def _decode_record(serialized):
  """(uint8 [32,32,3] image or zeros, label, decoded shape, ok) of a record."""
  features = tf.io.parse_single_example(serialized, cifar10.feature_spec())
  image = tf.io.decode_png(features["image/encoded"], channels=0)
  shape = tf.shape(image)
  ok = tf.reduce_all(tf.equal(shape, cifar10.IMAGE_SHAPE))
  image = tf.cond(ok, lambda: tf.reshape(image, cifar10.IMAGE_SHAPE),
                  lambda: tf.zeros(cifar10.IMAGE_SHAPE, tf.uint8))
  return image, features["image/class/label"], shape, ok


def _tf_message(error):
  """The useful part of a TF op error: no function names, no op name."""
  text = str(getattr(error, "message", error)).strip().splitlines()[0]
  text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
  return re.sub(r"\s*\[Op:.*$", "", text)


def decode_file(path):
  """Decoded (images, labels) of one record file; DataError on a bad record."""
  dataset = tf.data.TFRecordDataset(path, buffer_size=8 << 20)
  dataset = dataset.map(_decode_record, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True).batch(_DECODE_BATCH)
  images, labels, shapes, oks = [], [], [], []
  try:
    for image, label, shape, ok in dataset.as_numpy_iterator():
      images.append(image)
      labels.append(label)
      shapes.append(shape)
      oks.append(ok)
  except tf.errors.OpError as e:
    raise DataError(f"{path}: corrupt or truncated record ({_tf_message(e)})"
                    ) from None
  if not labels:
    return (np.zeros((0,) + cifar10.IMAGE_SHAPE, np.uint8),
            np.zeros((0,), np.int64))
  images, labels = np.concatenate(images), np.concatenate(labels)
  check_examples(path, np.concatenate(shapes), np.concatenate(oks), labels)
  return images, labels


def check_examples(path, shapes, oks, labels):
  """DataError naming the first wrong-shape image or out-of-range label."""
  if not oks.all():
    index = int(np.argmin(oks))
    shape = "x".join(str(d) for d in shapes[index])
    raise DataError(f"{path}: record {index} holds a {shape} image, expected "
                    "32x32x3")
  bad = (labels < 0) | (labels >= cifar10.NUM_CLASSES)
  if bad.any():
    index = int(np.argmax(bad))
    raise DataError(f"{path}: record {index} has label {labels[index]}, "
                    f"outside 0..{cifar10.NUM_CLASSES - 1}")


def check_counts(data_dir, split, entry, files, counts, labels):
  """Examples per file, per split and per class must match the manifest."""
  listed = {f["name"]: f for f in entry["files"]}
  for path, count in zip(files, counts):
    want = listed[os.path.basename(path)].get("num_examples", count)
    if want != count:
      raise DataError(f"{path} holds {count} examples, manifest says {want}")
  if entry.get("num_examples", len(labels)) != len(labels):
    raise DataError(f"{split} split in {data_dir} holds {len(labels)} "
                    f"examples, manifest says {entry['num_examples']}")
  counts = np.bincount(labels, minlength=cifar10.NUM_CLASSES).tolist()
  if entry.get("class_counts", counts) != counts:
    raise DataError(f"{split} class counts in {data_dir} ({counts}) do not "
                    f"match the manifest ({entry['class_counts']})")


def load_split(data_dir, split):
  """Reads, checks and decodes `split` of `data_dir` (no cache)."""
  files = cifar10.find_record_files(data_dir, split)
  manifest = cifar10.read_manifest(data_dir)
  entry = None
  if manifest is not None:  # names, sizes, sha256 before parsing anything
    entry = cifar10.verify_split_files(data_dir, manifest, split, files)
  parts = [decode_file(path) for path in files]
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  if not len(labels):
    raise DataError(f"the {split} records in {data_dir} hold no examples")
  if entry is not None:
    check_counts(data_dir, split, entry, files, [len(p[1]) for p in parts],
                 labels)
  return SplitData(images, labels, tuple(files))


def _signature(data_dir, split):
  """What must be unchanged for a cached split to be reused."""
  files = cifar10.find_record_files(data_dir, split)
  paths = files + [os.path.join(data_dir, cifar10.MANIFEST_FILENAME)]
  stats = []
  for path in paths:
    try:
      st = os.stat(path)
      stats.append((path, st.st_size, st.st_mtime_ns))
    except FileNotFoundError:
      stats.append((path, None, None))
  return tuple(stats)


def read_split(data_dir, split):
  """The decoded split, from the in-process cache if the files are unchanged."""
  key = (os.path.realpath(data_dir), split)
  with _lock:
    signature = _signature(data_dir, split)
    cached = _splits.get(key)
    if cached is None or cached[0] != signature:
      _splits[key] = (signature, load_split(data_dir, split))
    return _splits[key][1]


def clear_cache():
  """Forgets every decoded split (tests; frees memory)."""
  with _lock:
    _splits.clear()
