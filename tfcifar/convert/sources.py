"""Where the images come from: loaders and the registry of --source values.

Every loader returns {split: (uint8 images [N, 32, 32, 3], int64 labels [N])}.
An archive is recognised by its members: the official python archive (see
`official`) or a tar of image folders (see `folders`).

A source is `fn(request, workers, on_part) -> (splits, description)`; the
description goes into the manifest as `kind: details`. Sources that stream
(the official archive) call `on_part(split, index, images, labels)` as parts
of a split come in, so that encoding overlaps decompression.
"""

import concurrent.futures
import contextlib
import dataclasses
import os

import numpy as np

from tfcifar import cifar10
from tfcifar.convert import download as download_lib
from tfcifar.convert import folders
from tfcifar.convert import official
from tfcifar.convert import tar
from tfcifar.convert import workers as workers_lib
from tfcifar.errors import DataError
from tfcifar.errors import UserError

SAMPLE_ARCHIVE = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                              "sample_data", "cifar10_sample.tar.gz")


@contextlib.contextmanager
def _md5_checked(path, md5):
  """Checks the md5 of `path` in a thread while the body reads it.

  A mismatch is reported in place of any error about the content.
  """
  if not md5:
    yield
    return
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    digest = pool.submit(cifar10.file_digest, path, "md5")
    try:
      yield
    except DataError:
      download_lib.check_md5(path, md5, actual=digest.result())
      raise
    download_lib.check_md5(path, md5, actual=digest.result())


@contextlib.contextmanager
def _own_workers(workers):
  if workers is not None:
    yield workers
  else:
    with workers_lib.Workers() as own:
      yield own


def load_archive(path, workers=None, md5=None, on_part=None):
  """(splits, kind) of an official or image-folder archive.

  Reads the archive once, as a stream; `md5` (when given) is checked beside.
  """
  if not os.path.isfile(path):
    raise DataError(f"archive {path} does not exist or is not a file")
  batches = official.BatchCollector(path, on_part)
  images = {}
  with _md5_checked(path, md5):
    for name, data in tar.iter_members(path):
      if not batches.add(name, data) and folders.member_place(name):
        images[name] = data
  if batches.found:
    return batches.splits(), "official python pickles"
  if not images:
    raise DataError(
        f"{path} is neither the CIFAR-10 python archive ({official.BATCH_DIR}"
        "/data_batch_1..5, test_batch) nor a tar of train/<class>/ and "
        "test/<class>/ images")
  listing = folders.member_listing(images, path)
  del images
  with _own_workers(workers) as own:
    return (folders.decode_listing(listing, path, own,
                                   workers_lib.decode_members),
            "image folders")


def load_official_archive(path, md5=None):
  """The splits of the official python archive (its md5 checked if given)."""
  splits, kind = load_archive(path, md5=md5)
  if kind != "official python pickles":
    raise DataError(f"{path} is not the CIFAR-10 python archive")
  return splits


def load_image_archive(path, workers=None):
  """The splits of a tar of train/<class>/* and test/<class>/* images."""
  splits, kind = load_archive(path, workers)
  if kind != "image folders":
    raise DataError(f"{path} holds no image folders")
  return splits


def load_image_dir(root, workers=None):
  """The splits of a folder train/<class>/* and test/<class>/* of images."""
  listing = folders.dir_listing(root)
  with _own_workers(workers) as own:
    return folders.decode_listing(listing, root, own, workers_lib.decode_files)


def load_tfds(data_dir=None):
  """The splits of an already prepared tensorflow_datasets `cifar10`."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from absl import logging  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("--source=tfds needs tensorflow_datasets "
                    "(pip install tensorflow-datasets)") from None
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # no "has no dataset_info.json" noise
  try:
    builder = tfds.builder("cifar10", data_dir=data_dir)
    prepared = builder.is_prepared()
  finally:
    logging.set_verbosity(verbosity)
  if not prepared:
    raise UserError(
        f"tensorflow_datasets has no prepared cifar10 in {builder.data_dir} "
        "and cannot download it without network access; run `tfds build "
        "cifar10` where there is network, or use --source=download/--archive")
  splits = {}
  for split in cifar10.SPLITS:
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    splits[split] = (np.asarray(data["image"], np.uint8),
                     np.asarray(data["label"], np.int64))
  return splits


# --- the registry of --source values -----------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
  """What `run` was asked to convert (the flags that select the data)."""
  archive: str = None
  image_dir: str = None
  url: str = download_lib.DEFAULT_URL
  md5: str = download_lib.DEFAULT_MD5
  retries: int = 3
  backoff: float = 1.0
  staging_dir: str = None  # where a download is kept while converting


SOURCES = {}


def register_source(name):
  def register(fn):
    SOURCES[name] = fn
    return fn
  return register


def source_kind(description):
  """'download', 'sample', ... of a manifest's source text."""
  return str(description).split(":", 1)[0]


def sample_description():
  """The manifest source text of the bundled sample (changes with it)."""
  return (f"sample: {os.path.basename(SAMPLE_ARCHIVE)} "
          f"(sha256 {cifar10.file_digest(SAMPLE_ARCHIVE)[:16]})")


@register_source("download")
def _download(request, workers, on_part):
  path = download_lib.download(request.url, request.staging_dir,
                               md5=request.md5, retries=request.retries,
                               backoff=request.backoff)
  try:
    splits, kind = load_archive(path, workers, on_part=on_part)
  except DataError as e:  # name the URL, not the temporary file
    raise DataError(str(e).replace(path, request.url)) from None
  finally:
    cifar10.remove_if_exists(path)
  return splits, f"download: {request.url} ({kind}, md5 {request.md5})"


@register_source("archive")
def _archive(request, workers, on_part):
  """A local archive; the md5 is checked for the official file name."""
  path = os.path.abspath(os.path.expanduser(request.archive))
  is_official_name = os.path.basename(path) == official.ARCHIVE_NAME
  md5 = request.md5 if is_official_name else None
  splits, kind = load_archive(path, workers, md5=md5, on_part=on_part)
  checked = f", md5 {md5}" if md5 else ""
  return splits, (f"archive: {path} ({kind}, {os.path.getsize(path)} bytes"
                  f"{checked})")


@register_source("image_dir")
def _image_dir(request, workers, on_part):
  del on_part
  path = os.path.abspath(os.path.expanduser(request.image_dir))
  return load_image_dir(path, workers), f"image_dir: {path}"


@register_source("sample")
def _sample(request, workers, on_part):
  del request, on_part
  return load_image_archive(SAMPLE_ARCHIVE, workers), sample_description()


@register_source("tfds")
def _tfds(request, workers, on_part):
  del request, workers, on_part
  return load_tfds(), "tfds: cifar10"
