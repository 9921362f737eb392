"""Converts CIFAR-10 into TF-slim TFRecords (see `tfcifar.cifar10`).

  from tfcifar import convert
  convert.run("/data/cifar10")                       # download, md5, convert
  convert.run(d, archive="cifar-10-python.tar.gz")   # or a tar of image folders
  convert.run(d, image_dir="/data/cifar10-png")      # train/<class>/*, test/...
  convert.run(d, source="sample")                    # the bundled real sample
  convert.sample_dataset_dir()                       # sample, converted once

Modules: `converter` (`run`, idempotence, the sample cache), `sources`
(loaders and the registry of --source values), `official` (the python
pickle archive), `folders` (image folders), `download`, `tar` (a streaming
tar reader) and `workers` (parallel decoding and encoding).
"""

from tfcifar.convert.converter import cache_dir
from tfcifar.convert.converter import complete_manifest
from tfcifar.convert.converter import DEFAULT_DATA_DIR
from tfcifar.convert.converter import run
from tfcifar.convert.converter import sample_dataset_dir
from tfcifar.convert.download import ChecksumError
from tfcifar.convert.download import DEFAULT_MD5
from tfcifar.convert.download import DEFAULT_URL
from tfcifar.convert.download import DownloadError
from tfcifar.convert.sources import load_archive
from tfcifar.convert.sources import load_image_archive
from tfcifar.convert.sources import load_image_dir
from tfcifar.convert.sources import load_official_archive
from tfcifar.convert.sources import load_tfds
from tfcifar.convert.sources import SAMPLE_ARCHIVE
from tfcifar.convert.sources import SOURCES

__all__ = [
    "ChecksumError", "DEFAULT_DATA_DIR", "DEFAULT_MD5", "DEFAULT_URL",
    "DownloadError", "SAMPLE_ARCHIVE", "SOURCES", "cache_dir",
    "complete_manifest", "load_archive", "load_image_archive",
    "load_image_dir", "load_official_archive", "load_tfds", "run",
    "sample_dataset_dir",
]
