"""Bad input: one clear error, nothing finished."""

import os

import numpy as np
from PIL import Image
import pytest

from convert_helpers import (  # noqa: F401
    write_tar, official_files, official_archive, assert_nothing_finished,
    quiet_run, _truncated, make_image_dir, _write, write_bytes)
from tfcifar import convert
from tfcifar.convert import sources
from tfcifar.convert import workers as workers_lib
from tfcifar.errors import DataError
from tfcifar.errors import UserError


def _batches(**batches):
  return lambda tmp_path: {"archive": write_tar(
      tmp_path / "bad.tar.gz", official_files(batches=batches))}


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


def _image_dir_with(change):
  def make(tmp_path):
    root = str(tmp_path / "images")
    make_image_dir(root, per_class=1, sample_jpegs=False)
    change(root)
    return {"image_dir": root}
  return make




def _save_png(path, shape):
  Image.fromarray(np.zeros(shape, np.uint8)).save(path)


BAD_INPUTS = {
    "truncated archive": (_truncated, DataError, "truncated"),
    "not CIFAR": (lambda p: {"archive": write_tar(
        p / "other.tar.gz", {"docs/readme.txt": b"hello"})}, DataError,
                  "neither the CIFAR-10 python archive"),
    "not an archive": (lambda p: {"archive": write_bytes(
        p / "text.tar.gz", b"just text\n" * 99)}, DataError,
                       "not a tar archive"),
    "missing batch": (_batches(data_batch_3=None), DataError,
                      "has no cifar-10-batches-py/data_batch_3"),
    "wrong pixel shape": (_batches(data_batch_2={
        b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4}),
                          DataError, r"uint8 \[4, 1024\]"),
    "label out of range": (_batches(test_batch={
        b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}),
                           DataError, "labels outside 0..9"),
    "code in a pickle": (_batches(data_batch_1=_Evil()), DataError,
                         "refusing to load global"),
    "checksum of the official file": (lambda p: {"archive": write_tar(
        p / "cifar-10-python.tar.gz", official_files())},
                                      convert.ChecksumError, "md5"),
    "unreadable image": (_image_dir_with(lambda r: _write(
        os.path.join(r, "train", "cat", "broken.png"), b"\x89PNG garbage")),
                         DataError, "cannot read image .*broken.png"),
    "wrong image size": (_image_dir_with(lambda r: _save_png(
        os.path.join(r, "test", "dog", "big.png"), (33, 32, 3))),
                         DataError, "big.png is 32x33 pixels"),
    "empty class folder": (_image_dir_with(lambda r: [
        os.remove(os.path.join(r, "train", "frog", n))
        for n in os.listdir(os.path.join(r, "train", "frog"))]),
                           DataError, "train/frog/ has no PNG or JPEG"),
    "unknown class folder": (_image_dir_with(lambda r: os.rename(
        os.path.join(r, "test", "ship"), os.path.join(r, "test", "boat"))),
                             DataError, "test/boat/ is not a CIFAR-10 class"),
    "archive and image_dir": (lambda p: {"archive": "a.tar.gz",
                                         "image_dir": "d"}, UserError,
                              "only one of --archive and --image_dir"),
    "too many shards": (lambda p: {"archive": write_tar(
        p / "ok.tar.gz", official_files()), "num_shards": 18}, UserError,
                        "exceeds the 17 examples"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, case):
  make, error, message = BAD_INPUTS[case]
  kwargs = make(tmp_path)
  out = tmp_path / "out"
  with pytest.raises(error, match=message) as raised:
    quiet_run(out, **kwargs)
  assert "\n" not in str(raised.value)
  assert_nothing_finished(str(out))


def test_error_while_workers_encode_stops_them(tmp_path, monkeypatch):
  """Batches already queued to the workers (in large tasks) are dropped."""
  monkeypatch.setattr(workers_lib, "CHUNK_SIZE", 100)  # 300 KB per task
  path = write_tar(tmp_path / "big.tar.gz", official_files(num=400))
  data = open(path, "rb").read()
  cut = write_bytes(tmp_path / "cut.tar.gz", data[:len(data) * 3 // 4])
  with pytest.raises(DataError, match="truncated"):
    quiet_run(tmp_path / "out", archive=cut, num_workers=2)
  assert_nothing_finished(str(tmp_path / "out"))


def test_unwritable_dataset_dir(tmp_path, official_archive):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  with pytest.raises(UserError, match="not a directory"):
    quiet_run(blocker, archive=official_archive)
  with pytest.raises(UserError, match="is not writable"):
    quiet_run(blocker / "sub", archive=official_archive)
  if os.geteuid() != 0:  # root writes anywhere
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="is not writable"):
      quiet_run(locked, archive=official_archive)


def test_tfds_without_prepared_data_fails_in_one_line(tmp_path):
  with pytest.raises(UserError, match="no prepared cifar10") as raised:
    sources.load_tfds(data_dir=str(tmp_path))
  assert "\n" not in str(raised.value)
