"""Tests of the CIFAR-10 -> TFRecord conversion (`tfcifar.convert`, its tool).

The archives are written here, in the official layout (cifar-10-batches-py/
data_batch_1..5, test_batch, batches.meta: pickled dicts with b'data' uint8
[N, 3072] CHW rows and b'labels'), small; real images come from the bundled
sample. Records are read back with TF-slim's feature spec and tf.io.decode_png.
"""

import hashlib
import http.server
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
import threading

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tfcifar import cifar10
from tfcifar import convert
from tfcifar.convert import sources
from tfcifar.convert import tar as tar_lib
from tfcifar.convert import workers as workers_lib
from tfcifar.errors import DataError
from tfcifar.errors import UserError

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOOL = os.path.join(REPO, "tools", "download_and_convert_cifar10.py")
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


# --- what the records hold ---------------------------------------------------


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
  members = tar_lib.read_members(convert.SAMPLE_ARCHIVE)
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


def make_image_dir(root, per_class=2, sample_jpegs=True):
  """PNGs of random pixels plus real JPEGs; returns the expected multiset."""
  rng = np.random.RandomState(3)
  members = tar_lib.read_members(convert.SAMPLE_ARCHIVE)
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


# --- idempotence and interruption --------------------------------------------


def test_second_run_is_a_no_op_and_overwrite_redoes(tmp_path,
                                                    official_archive):
  out = str(tmp_path / "out")
  first = quiet_run(out, archive=official_archive)
  stamps = {n: os.stat(os.path.join(out, n)).st_mtime_ns
            for n in os.listdir(out)}
  messages = []
  assert convert.run(out, archive=official_archive,
                     log=messages.append) == first
  assert convert.run(out, log=messages.append) == first  # no source given
  assert all("nothing to do" in m for m in messages) and len(messages) == 2
  assert stamps == {n: os.stat(os.path.join(out, n)).st_mtime_ns
                    for n in os.listdir(out)}
  with pytest.raises(UserError, match="--overwrite"):
    quiet_run(out, archive=official_archive, num_shards=2)
  with pytest.raises(UserError, match="--overwrite"):
    quiet_run(out, source="sample")
  quiet_run(out, archive=official_archive, num_shards=2, overwrite=True)
  assert sorted(n for n in os.listdir(out) if "train" in n) == [
      "cifar10_train-00000-of-00002.tfrecord",
      "cifar10_train-00001-of-00002.tfrecord"]
  assert_records_equal(out, expected_official())


def test_incomplete_output_is_converted_again(tmp_path, official_archive):
  out = str(tmp_path / "out")
  quiet_run(out, archive=official_archive)
  with open(os.path.join(out, "cifar10_test.tfrecord"), "ab") as f:
    f.write(b"x")  # size no longer matches the manifest
  with open(os.path.join(out, "cifar10_train.tfrecord.incomplete"), "w") as f:
    f.write("left by a killed run")
  quiet_run(out, archive=official_archive)
  assert "cifar10_train.tfrecord.incomplete" not in os.listdir(out)
  assert_records_equal(out, expected_official())


def test_interrupted_write_leaves_nothing_finished(tmp_path, official_archive,
                                                   monkeypatch):
  calls = []

  def interrupted(chunk):
    calls.append(len(chunk[1]))
    if len(calls) == 2:  # train written, interrupted in test
      raise KeyboardInterrupt
    return cifar10.encode_examples(*chunk)

  monkeypatch.setattr(workers_lib, "_encode_chunk", interrupted)
  out = str(tmp_path / "out")
  with pytest.raises(KeyboardInterrupt):
    quiet_run(out, archive=official_archive, num_workers=1)
  assert_nothing_finished(out)
  # Over a complete dataset, with --overwrite: the old one stays intact.
  monkeypatch.undo()
  manifest = quiet_run(out, archive=official_archive)
  monkeypatch.setattr(workers_lib, "_encode_chunk", interrupted)
  calls.clear()
  with pytest.raises(KeyboardInterrupt):
    quiet_run(out, archive=official_archive, num_shards=2, overwrite=True,
              num_workers=1)
  assert convert.complete_manifest(out) == manifest
  assert sorted(os.listdir(out)) == ["cifar10_test.tfrecord",
                                     "cifar10_train.tfrecord", "labels.txt",
                                     "manifest.json"]


# --- bad input: one clear error, nothing finished ----------------------------


def _truncated(tmp_path):
  path = write_tar(tmp_path / "cut.tar.gz", official_files())
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  return {"archive": path}


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


def _write(path, data):
  with open(path, "wb") as f:
    f.write(data)


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


# --- download ----------------------------------------------------------------


class _Server:
  """A local HTTP server: serves `files`, after answering `failures` first."""

  def __init__(self):
    self.files, self.failures, self.requests = {}, [], []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # noqa: N802
        server.requests.append(self.path)
        if server.failures:
          self.send_error(server.failures.pop(0))
          return
        data = server.files.get(self.path)
        if data is None:
          self.send_error(404)
          return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server(official_archive):
  served = _Server()
  served.files["/cifar-10-python.tar.gz"] = open(official_archive, "rb").read()
  yield served
  served.httpd.shutdown()


def test_download_checks_md5_and_converts(tmp_path, server):
  data = server.files["/cifar-10-python.tar.gz"]
  server.failures[:] = [503]  # one transient failure, retried
  manifest = quiet_run(tmp_path / "out",
                       url=server.url + "/cifar-10-python.tar.gz",
                       md5=hashlib.md5(data).hexdigest(), backoff=0)
  assert server.requests[-2:] == ["/cifar-10-python.tar.gz"] * 2
  assert manifest["source"].startswith(f"download: {server.url}")
  assert_records_equal(str(tmp_path / "out"), expected_official())
  assert not [n for n in os.listdir(tmp_path / "out") if "download" in n]


def test_download_md5_mismatch(tmp_path, server):
  with pytest.raises(convert.ChecksumError, match="md5 .* expected "
                     + convert.DEFAULT_MD5):
    quiet_run(tmp_path / "out", url=server.url + "/cifar-10-python.tar.gz",
              backoff=0)
  assert_nothing_finished(str(tmp_path / "out"))


def test_download_of_a_bad_archive_names_the_url(tmp_path, server):
  data = server.files["/cifar-10-python.tar.gz"][:5000]
  server.files["/cut.tar.gz"] = data
  with pytest.raises(DataError, match=f"{server.url}/cut.tar.gz is truncated"):
    quiet_run(tmp_path / "out", url=server.url + "/cut.tar.gz",
              md5=hashlib.md5(data).hexdigest())
  assert_nothing_finished(str(tmp_path / "out"))


def test_download_not_found_fails_at_once(tmp_path, server):
  count = len(server.requests)
  with pytest.raises(convert.DownloadError, match="HTTP 404"):
    quiet_run(tmp_path / "out", url=server.url + "/missing.tar.gz", backoff=0)
  assert len(server.requests) == count + 1
  assert_nothing_finished(str(tmp_path / "out"))


def test_download_unreachable_after_retries(tmp_path):
  with socket.socket() as s:  # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  with pytest.raises(convert.DownloadError, match="after 3 attempt"):
    quiet_run(tmp_path / "out", url=f"http://127.0.0.1:{port}/c.tar.gz",
              retries=2, backoff=0)
  assert_nothing_finished(str(tmp_path / "out"))


# --- the sample cache, the tar reader -----------------------------------------


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


@pytest.mark.parametrize("format_", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT,
                                     tarfile.USTAR_FORMAT])
def test_tar_reader_matches_tarfile(tmp_path, format_):
  files = {"a/" + "long_folder_name/" * 6 + "x.png": b"1" * 700,
           "./b.txt": b"", "c/d/e.bin": bytes(range(256)) * 3}
  path = str(tmp_path / "t.tar")
  with tarfile.open(path, "w", format=format_) as archive:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  members = {k: bytes(v) for k, v in tar_lib.read_members(path).items()}
  assert members == {k.removeprefix("./"): v for k, v in files.items()}
  data = open(path, "rb").read()
  with pytest.raises(DataError, match="truncated"):
    tar_lib.read_members(write_bytes(tmp_path / "cut.tar", data[:1300]))


def write_bytes(path, data):
  _write(path, data)
  return str(path)


# --- the command-line tool ---------------------------------------------------


@pytest.fixture(scope="module")
def tool_runs(tmp_path_factory, official_archive):
  """Runs the tool on a few cases at once (each process imports TF)."""
  tmp = tmp_path_factory.mktemp("tool")
  truncated = _truncated(tmp)["archive"]
  (tmp / "a_file").write_text("x")
  cases = {
      "truncated": [f"--archive={truncated}", f"--dataset_dir={tmp}/bad"],
      "unwritable": [f"--archive={official_archive}",
                     f"--dataset_dir={tmp}/a_file/out"],
      "ok": [f"--archive={official_archive}", f"--dataset_dir={tmp}/ok",
             "--num_shards=2"],
  }
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  procs = {name: subprocess.Popen([sys.executable, TOOL] + args, env=env,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
           for name, args in cases.items()}
  results = {}
  for name, proc in procs.items():
    try:
      stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      proc.kill()
      stdout, stderr = proc.communicate()
    results[name] = (proc.returncode, stdout, stderr)
  return tmp, results


@pytest.mark.parametrize("case,message", [
    ("truncated", "cut.tar.gz is truncated"),
    ("unwritable", "a_file/out is not writable"),
])
def test_tool_errors_are_one_line(tool_runs, case, message):
  tmp, results = tool_runs
  code, _, stderr = results[case]
  assert code == 2
  assert "Traceback" not in stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr
  assert message in lines[0]
  if case == "truncated":
    assert_nothing_finished(str(tmp / "bad"))


def test_tool_converts(tool_runs):
  tmp, results = tool_runs
  code, stdout, stderr = results["ok"]
  assert code == 0, stderr
  assert "wrote 70 train + 17 test examples" in stdout
  out = str(tmp / "ok")
  assert cifar10.find_record_files(out, "test") == [
      os.path.join(out, f"cifar10_test-0000{i}-of-00002.tfrecord")
      for i in range(2)]
  assert_records_equal(out, expected_official())
  assert json.load(open(os.path.join(out, "manifest.json")))["splits"][
      "test"]["num_examples"] == 17
