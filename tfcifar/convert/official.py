"""The official CIFAR-10 python archive (cifar-10-python.tar.gz).

  cifar-10-batches-py/data_batch_1 .. data_batch_5   train, in this order
  cifar-10-batches-py/test_batch                     test
  cifar-10-batches-py/batches.meta                   label_names

Each batch is a pickled dict with b'data' (uint8 [N, 3072]: 1024 red, 1024
green, 1024 blue values per image, rows of 32) and b'labels' (N ints 0..9).
The pickles are read with an unpickler that admits numpy arrays and nothing
else, so that a malicious archive cannot run code.
"""

import io
import pickle

import numpy as np

from tfcifar import cifar10
from tfcifar.errors import DataError

ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
           "test": ("test_batch",)}
META = f"{BATCH_DIR}/batches.meta"


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickles dicts, lists, bytes, numbers and numpy arrays only."""

  _ALLOWED = {
      ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
      ("numpy.core.multiarray", "_reconstruct"),
      ("numpy._core.multiarray", "_reconstruct"),
      ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
      ("numpy.core.numeric", "_frombuffer"),
      ("numpy._core.numeric", "_frombuffer"),
  }

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
    return super().find_class(module, name)


def _unpickle(data, where):
  try:
    return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"{where} is not a readable CIFAR-10 pickle "
                    f"({type(e).__name__}: {e})") from None


def _entry(batch, key):
  if not isinstance(batch, dict):
    return None
  return batch.get(key.encode(), batch.get(key))


def parse_batch(data, where):
  """(uint8 [N, 32, 32, 3], int64 [N]) of one pickled batch."""
  batch = _unpickle(data, where)
  rows, labels = _entry(batch, "data"), _entry(batch, "labels")
  if rows is None or labels is None:
    raise DataError(f"{where} is not a CIFAR-10 batch (no data and labels)")
  rows, labels = np.asarray(rows), np.asarray(labels)
  if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
    raise DataError(f"{where}: data is {rows.dtype} {list(rows.shape)}, "
                    "expected uint8 [N, 3072]")
  if (labels.shape != (len(rows),) or
      not np.issubdtype(labels.dtype, np.integer)):
    raise DataError(f"{where}: {labels.size} labels of type {labels.dtype} "
                    f"for {len(rows)} images")
  if len(labels) and (labels.min() < 0 or labels.max() >= cifar10.NUM_CLASSES):
    raise DataError(f"{where}: labels outside 0..{cifar10.NUM_CLASSES - 1}")
  images = rows.reshape(-1, 3, cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE)
  return images.transpose(0, 2, 3, 1), labels.astype(np.int64)


def _check_meta(data, where):
  meta = _unpickle(data, where)
  names = _entry(meta, "label_names") or []
  names = [n.decode() if isinstance(n, bytes) else n for n in names]
  if tuple(names) != cifar10.CLASS_NAMES:
    raise DataError(f"{where} lists classes {names}, not CIFAR-10's")


class BatchCollector:
  """Parses the batches of an archive as its members stream in.

  `on_part(split, index, images, labels)` is called as soon as a batch is
  parsed (the archive's order is not the batches' order), so that encoding
  can start while the rest is decompressed.
  """

  def __init__(self, path, on_part=None):
    self.path = path
    self.on_part = on_part
    self.parts = {}  # member name -> (images, labels)
    self._where = {f"{BATCH_DIR}/{name}": (split, index)
                   for split, names in BATCHES.items()
                   for index, name in enumerate(names)}

  def add(self, name, data):
    """Takes a member; False when it is not one of the official files."""
    where = f"{self.path}:{name}"
    if name == META:
      _check_meta(data, where)
      return True
    if name not in self._where:
      return False
    images, labels = parse_batch(data, where)
    self.parts[name] = (images, labels)
    if self.on_part:
      self.on_part(*self._where[name], images, labels)
    return True

  @property
  def found(self):
    return bool(self.parts)

  def splits(self):
    """{split: (images, labels)}, batches in order; all must be present."""
    splits = {}
    for split, names in BATCHES.items():
      parts = []
      for name in names:
        member = f"{BATCH_DIR}/{name}"
        if member not in self.parts:
          raise DataError(f"{self.path} has no {member}: not the complete "
                          "CIFAR-10 python archive")
        parts.append(self.parts[member])
      splits[split] = (np.concatenate([p[0] for p in parts]),
                       np.concatenate([p[1] for p in parts]))
    return splits
