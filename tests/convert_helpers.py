"""Shared inputs of the conversion tests.

The archives are written here, in the official layout (cifar-10-batches-py/
data_batch_1..5, test_batch, batches.meta: pickled dicts with b'data' uint8
[N, 3072] CHW rows and b'labels'), small; real images come from the bundled
sample. Records are read back with TF-slim's feature spec and tf.io.decode_png.
"""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tfcifar import cifar10
from tfcifar import convert
from tfcifar.convert import tar

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]

# --- inputs written by the tests ---------------------------------------------


def official_batch(num, seed):
  """A batch dict as the official pickles hold it (CHW rows, int labels)."""
  rng = np.random.RandomState(seed)
  return {b"batch_label": b"batch %d" % seed,
          b"labels": [int(v) for v in rng.randint(0, 10, num)],
          b"data": rng.randint(0, 256, (num, 3072)).astype(np.uint8),
          b"filenames": [b"img_%d.png" % i for i in range(num)]}


def write_tar(path, files, mode="w:gz"):
  """A tar archive of {member name: bytes, or None for a folder}."""
  with tarfile.open(path, mode) as archive:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      if data is None:
        info.type = tarfile.DIRTYPE
      else:
        info.size = len(data)
      archive.addfile(info, None if data is None else io.BytesIO(data))
  return str(path)


# The member order of the real cifar-10-python.tar.gz: not the batch order.
ARCHIVE_ORDER = ["", "data_batch_4", "readme.html", "test_batch",
                 "data_batch_3", "batches.meta", "data_batch_2",
                 "data_batch_5", "data_batch_1"]


def official_files(num=12, batches=None):
  """{member: bytes} of the official layout (`batches` overrides)."""
  batches = dict({name: official_batch(num + i, i)
                  for i, name in enumerate(BATCHES)}, **(batches or {}))
  meta = {b"label_names": [n.encode() for n in cifar10.CLASS_NAMES],
          b"num_cases_per_batch": num, b"num_vis": 3072}
  contents = {name: pickle.dumps(batch, protocol=2)
              for name, batch in batches.items() if batch is not None}
  contents.update({"": None, "readme.html": b"<html></html>",
                   "batches.meta": pickle.dumps(meta, protocol=2)})
  return {f"cifar-10-batches-py/{name}": contents[name]
          for name in ARCHIVE_ORDER if name in contents}


def expected_official(num=12):
  """The splits the official layout above must convert to (the spec)."""
  out = {}
  for split, names in (("train", BATCHES[:5]), ("test", BATCHES[5:])):
    batches = [official_batch(num + BATCHES.index(n), BATCHES.index(n))
               for n in names]
    rows = np.concatenate([b[b"data"] for b in batches])
    out[split] = (rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1),
                  np.concatenate([b[b"labels"] for b in batches]))
  return out


@pytest.fixture(scope="module")
def official_archive(tmp_path_factory):
  path = tmp_path_factory.mktemp("archive") / "small-official.tar.gz"
  return write_tar(path, official_files())


def read_split(dataset_dir, split):
  """(images, labels, formats, heights, widths) parsed with the slim spec."""
  files = cifar10.find_record_files(dataset_dir, split)
  everything = 1 << 20
  records = next(iter(tf.data.TFRecordDataset(files).batch(everything)))
  examples = tf.io.parse_example(records, cifar10.feature_spec())
  encoded = examples["image/encoded"]
  if len(encoded) < 256:  # eager is faster than tracing a dataset map
    images = np.stack([tf.io.decode_png(png).numpy() for png in encoded])
  else:
    images = next(iter(tf.data.Dataset.from_tensor_slices(encoded).map(
        tf.io.decode_png).batch(everything))).numpy()
  return (images,) + tuple(
      examples[key].numpy() for key in ("image/class/label", "image/format",
                                        "image/height", "image/width"))


def assert_records_equal(dataset_dir, expected):
  for split, (want_images, want_labels) in expected.items():
    images, labels, formats, heights, widths = read_split(dataset_dir, split)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    assert set(formats) == {b"png"}
    assert set(heights) == {32} and set(widths) == {32}


def assert_same_multiset(images, labels, want_images, want_labels):
  """Equal as collections of (label, pixels), whatever the order."""
  def key(ims, labs):
    return sorted((int(l), hashlib.sha256(im.tobytes()).hexdigest())
                  for im, l in zip(ims, labs))
  assert len(images) == len(want_images)
  assert key(images, labels) == key(want_images, want_labels)


def assert_nothing_finished(dataset_dir):
  """No manifest, no record file under a final name, no temp file left."""
  names = os.listdir(dataset_dir) if os.path.isdir(dataset_dir) else []
  assert cifar10.MANIFEST_FILENAME not in names
  assert not [n for n in names if "tfrecord" in n or "download" in n], names


def quiet_run(dataset_dir, **kwargs):
  kwargs.setdefault("log", None)
  return convert.run(str(dataset_dir), **kwargs)


def _truncated(tmp_path):
  path = write_tar(tmp_path / "cut.tar.gz", official_files())
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  return {"archive": path}


def _write(path, data):
  with open(path, "wb") as f:
    f.write(data)


def write_bytes(path, data):
  _write(path, data)
  return str(path)


def make_image_dir(root, per_class=2, sample_jpegs=True):
  """PNGs of random pixels plus real JPEGs; returns the expected multiset."""
  rng = np.random.RandomState(3)
  members = tar.read_members(convert.SAMPLE_ARCHIVE)
  want = {split: ([], []) for split in cifar10.SPLITS}
  for split in cifar10.SPLITS:
    for label, name in enumerate(cifar10.CLASS_NAMES):
      folder = os.path.join(root, split, name)
      os.makedirs(folder)
      for i in range(per_class):
        pixels = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:03d}.png"))
        want[split][0].append(pixels)
        want[split][1].append(label)
      if sample_jpegs:
        data = bytes(members[f"{split}/{name}/0000.jpg"])
        with open(os.path.join(folder, "real.JPEG"), "wb") as f:
          f.write(data)
        want[split][0].append(np.asarray(Image.open(io.BytesIO(data))))
        want[split][1].append(label)
      with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image: ignored")
  return want
