"""Parallel image decoding and Example encoding in forked worker processes.

Encoding a 32x32 PNG costs ~100 us of zlib, so 60,000 images take ~8 s on
one core. The work goes in chunks to a `fork` process pool (the workers need
no re-import of TensorFlow): the `Encoder` queues each part of a split as soon
as it is loaded, and hands the examples to `cifar10.write_dataset` in order,
so that loading, encoding and writing overlap. Workers ignore SIGINT: Ctrl-C
stops the main process, which terminates the pool.
"""

import concurrent.futures
import io
import multiprocessing
import os
import signal

import numpy as np

from tfcifar import cifar10
from tfcifar.errors import DataError
from tfcifar.errors import UserError

CHUNK_SIZE = 500


def default_num_workers():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def _ignore_sigint():
  signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Done:
  """A computed result with the interface of a Future."""

  def __init__(self, value):
    self.value = value

  def result(self):
    return self.value


class Workers:
  """Runs functions over chunks in a lazily started fork pool, or serially.

  Serial when num_workers <= 1 or where the platform has no fork. Use as a
  context manager. On an error, queued chunks are cancelled and the running
  ones (well under a second each) finish: unlike `multiprocessing.Pool`'s
  terminate, this cannot hang with large chunks in flight.
  """

  def __init__(self, num_workers=None):
    self.num_workers = num_workers or default_num_workers()
    if "fork" not in multiprocessing.get_all_start_methods():
      self.num_workers = 1
    self._pool = None

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
      self._pool = None

  def _started_pool(self):
    if self._pool is None:
      self._pool = concurrent.futures.ProcessPoolExecutor(
          self.num_workers, mp_context=multiprocessing.get_context("fork"),
          initializer=_ignore_sigint)
    return self._pool

  def imap(self, fn, chunks):
    """fn(chunk) for each chunk, in order (an iterator)."""
    if self.num_workers <= 1 or len(chunks) <= 1:
      return map(fn, chunks)
    return self._started_pool().map(fn, chunks)

  def submit(self, fn, chunk):
    """fn(chunk), started now; `.result()` waits for it."""
    if self.num_workers <= 1:
      return _Done(fn(chunk))
    return self._started_pool().submit(fn, chunk)


def chunked(items, size=None):
  size = size or CHUNK_SIZE
  return [items[i:i + size] for i in range(0, len(items), size)]


# --- decoding ----------------------------------------------------------------


def decode_image(data, name):
  """uint8 [32, 32, 3] pixels of PNG/JPEG bytes; DataError naming `name`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
      if image.size != (cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE):
        width, height = image.size
        raise DataError(f"image {name} is {width}x{height} pixels, expected "
                        f"{cifar10.IMAGE_SIZE}x{cifar10.IMAGE_SIZE}")
      return np.asarray(image.convert("RGB"))
  except DataError:
    raise
  except Exception as e:  # PIL raises many kinds  pylint: disable=broad-except
    raise DataError(f"cannot read image {name}: "
                    f"{' '.join(str(e).split()) or type(e).__name__}") from None


def _decode_chunk(items):
  """[(name, bytes)] -> uint8 [n, 32, 32, 3]."""
  out = np.empty((len(items),) + cifar10.IMAGE_SHAPE, np.uint8)
  for i, (name, data) in enumerate(items):
    out[i] = decode_image(data, name)
  return out


def _read_and_decode_chunk(paths):
  """[path] -> uint8 [n, 32, 32, 3], reading the files in the worker."""
  out = np.empty((len(paths),) + cifar10.IMAGE_SHAPE, np.uint8)
  for i, path in enumerate(paths):
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      raise DataError(f"cannot read image {path}: {e.strerror}") from None
    out[i] = decode_image(data, path)
  return out


def decode_members(workers, items):
  """uint8 [n, 32, 32, 3] of [(name, bytes)] (archive members)."""
  return _decode(workers, _decode_chunk, items)


def decode_files(workers, paths):
  """uint8 [n, 32, 32, 3] of image files (read in the workers)."""
  return _decode(workers, _read_and_decode_chunk, paths)


def _decode(workers, fn, items):
  parts = list(workers.imap(fn, chunked(items)))
  if not parts:
    return np.zeros((0,) + cifar10.IMAGE_SHAPE, np.uint8)
  return np.concatenate(parts)


# --- encoding and writing ----------------------------------------------------


def _encode_chunk(chunk):
  images, labels = chunk
  return cifar10.encode_examples(images, labels)


class Encoder:
  """Encodes the parts of each split in the workers as they are submitted.

  `write` is a `write(path, images, labels) -> tmp_path` for
  `cifar10.write_dataset`, which writes each split's shards in order: it
  writes the encoded examples of the next range of the shard's split.
  """

  def __init__(self, workers):
    self.workers = workers
    self.parts = {}  # split -> {index: (labels, [[size, pending result]])}
    self.written = {}  # split -> examples written so far

  def submit(self, split, index, images, labels):
    """Starts encoding part `index` of `split` (parts are ordered by index)."""
    pending = [[len(chunk_labels), self.workers.submit(
        _encode_chunk, (chunk_images, chunk_labels))]
               for chunk_images, chunk_labels in zip(chunked(images),
                                                     chunked(labels))]
    self.parts.setdefault(split, {})[index] = (np.asarray(labels), pending)

  def has(self, split):
    return split in self.parts

  def labels(self, split):
    return np.concatenate([self.parts[split][i][0]
                           for i in sorted(self.parts[split])])

  def _examples(self, split, start, stop):
    """The encoded examples start..stop of `split` (each range once)."""
    offset = 0
    for index in sorted(self.parts[split]):
      for chunk in self.parts[split][index][1]:
        size, pending = chunk
        if offset < stop and offset + size > start:
          yield from pending.result()[max(start - offset, 0):stop - offset]
          if offset + size <= stop:
            chunk[1] = None  # written: free the memory
        offset += size

  def write(self, path, images, labels):
    del images  # encoded already
    split = cifar10.record_file_split(os.path.basename(path))
    start = self.written.get(split, 0)
    stop = self.written[split] = start + len(labels)
    if not np.array_equal(self.labels(split)[start:stop], labels):
      raise RuntimeError(f"{path}: shards written out of order")
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tmp = f"{path}.incomplete"
    try:
      with tf.io.TFRecordWriter(tmp) as writer:
        for example in self._examples(split, start, stop):
          writer.write(example)
    except tf.errors.OpError as e:
      cifar10.remove_if_exists(tmp)
      raise UserError(f"cannot write {tmp}: {e.message}") from None
    except BaseException:
      cifar10.remove_if_exists(tmp)
      raise
    return tmp
