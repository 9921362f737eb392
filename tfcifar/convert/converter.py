"""`run`: converts one CIFAR-10 source into the on-disk format, once."""

import os
import re
import shutil
import tempfile
import time

from tfcifar import cifar10
from tfcifar.convert import download as download_lib
from tfcifar.convert import sources
from tfcifar.convert import workers as workers_lib
from tfcifar.errors import DataError
from tfcifar.errors import UserError

DEFAULT_DATA_DIR = (os.environ.get("TFCIFAR_DATA_DIR") or
                    os.path.join(os.path.expanduser("~"), "tfcifar_data",
                                 "cifar10"))
SAMPLE_DIRNAME = "cifar10_sample"
_MAX_SHARDS = 99999  # five digits in the shard names
_STALE_DOWNLOAD_RE = re.compile(r"^\..+\.download-(\d+)$")


def cache_dir():
  """`$TFCIFAR_CACHE_DIR`, else ~/.cache/tfcifar."""
  return (os.environ.get("TFCIFAR_CACHE_DIR") or
          os.path.join(os.path.expanduser("~"), ".cache", "tfcifar"))


def resolve_source(source=None, archive=None, image_dir=None):
  """The --source value, inferred from --archive/--image_dir when not given."""
  given = [flag for flag, value in (("archive", archive),
                                    ("image_dir", image_dir)) if value]
  if len(given) > 1:
    raise UserError("give only one of --archive and --image_dir")
  if source is None:
    return given[0] if given else "download"
  if source not in sources.SOURCES:
    raise UserError(f"unknown --source={source}; one of "
                    f"{', '.join(sources.SOURCES)}")
  if given and given[0] != source:
    raise UserError(f"--{given[0]} does not go with --source={source}")
  if source in ("archive", "image_dir") and not given:
    raise UserError(f"--source={source} needs --{source}=PATH")
  return source


def complete_manifest(dataset_dir):
  """The manifest if `dataset_dir` holds a complete dataset, else None.

  Complete: manifest.json and labels.txt present, and each split's record
  files exactly those the manifest lists, with the listed sizes.
  """
  try:
    manifest = cifar10.read_manifest(dataset_dir)
    if manifest is None or not os.path.isfile(
        os.path.join(dataset_dir, cifar10.LABELS_FILENAME)):
      return None
    for split in cifar10.SPLITS:
      files = cifar10.find_record_files(dataset_dir, split)
      cifar10.verify_split_files(dataset_dir, manifest, split, files,
                                 checksums=False)
  except (DataError, OSError, KeyError, TypeError):
    return None
  return manifest


def _num_shards_of(manifest):
  return len(manifest["splits"]["train"]["files"])


def prepare_output_dir(dataset_dir):
  """Creates `dataset_dir`, checks it is writable, removes stale temp files."""
  if os.path.exists(dataset_dir) and not os.path.isdir(dataset_dir):
    raise UserError(f"dataset_dir {dataset_dir} exists and is not a directory")
  try:
    os.makedirs(dataset_dir, exist_ok=True)
    with tempfile.TemporaryFile(dir=dataset_dir):
      pass
  except OSError as e:
    raise UserError(f"dataset_dir {dataset_dir} is not writable: "
                    f"{e.strerror or e}") from None
  for name in os.listdir(dataset_dir):
    stale_download = _STALE_DOWNLOAD_RE.match(name)
    if ((name.endswith(".incomplete") and
         cifar10.record_file_split(name[:-len(".incomplete")])) or
        (stale_download and not _pid_alive(int(stale_download.group(1))))):
      cifar10.remove_if_exists(os.path.join(dataset_dir, name))


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:
    return True
  return True


def _keep_existing(manifest, dataset_dir, source, num_shards, log):
  """Returns the existing manifest, or raises where it is not what was asked."""
  shards = _num_shards_of(manifest)
  kind = sources.source_kind(manifest.get("source"))
  if (source is None or kind == source) and shards == num_shards:
    log(f"{dataset_dir} already holds the converted CIFAR-10 "
        f"({manifest.get('source')}); nothing to do (--overwrite converts "
        "again)")
    return manifest
  raise UserError(
      f"{dataset_dir} already holds a converted CIFAR-10 "
      f"({manifest.get('source')}, {shards} file(s) per split); pass --overwrite to replace it with "
      f"--source={source or 'download'} --num_shards={num_shards}")


def _check_shards(splits, num_shards):
  smallest = min(len(labels) for _, labels in splits.values())
  if num_shards > smallest:
    raise UserError(f"--num_shards={num_shards} exceeds the {smallest} "
                    "examples of the smallest split")


def run(dataset_dir, source=None, archive=None, image_dir=None, num_shards=1,
        overwrite=False, url=download_lib.DEFAULT_URL,
        md5=download_lib.DEFAULT_MD5, retries=3, backoff=1.0,
        num_workers=None, log=print):
  """Converts CIFAR-10 into `dataset_dir`; returns the manifest dict.

  Args:
    dataset_dir: output directory (created).
    source: one of `sources.SOURCES` (download, archive, image_dir, sample,
      tfds); inferred from `archive`/`image_dir`, else "download".
    archive: a local official archive or a tar of image folders.
    image_dir: a folder train/<class>/* and test/<class>/* of PNG/JPEG files.
    num_shards: 1 for the two TF-slim files, else N shards per split.
    overwrite: convert even when `dataset_dir` holds a complete dataset.
    url, md5: what to download and its expected md5 (also checked for a local
      archive named cifar-10-python.tar.gz); md5=None skips the check.
    retries, backoff: download retries, waiting backoff * 2**attempt seconds.
    num_workers: encoding processes (default: the usable CPU cores).
    log: called with one-line progress messages (None for silence).

  Raises:
    UserError (DataError, download.DownloadError, download.ChecksumError) with
    a one-line message; nothing that looks finished is left behind then.
  """
  log = log or (lambda message: None)
  requested = source
  source = resolve_source(source, archive, image_dir)
  if not 1 <= num_shards <= _MAX_SHARDS:
    raise UserError(f"--num_shards must be in 1..{_MAX_SHARDS}, not "
                    f"{num_shards}")
  dataset_dir = os.path.abspath(os.path.expanduser(dataset_dir))
  existing = complete_manifest(dataset_dir)
  if existing is not None and not overwrite:
    explicit = requested or archive or image_dir
    return _keep_existing(existing, dataset_dir, source if explicit else None,
                          num_shards, log)
  created = not os.path.exists(dataset_dir)
  prepare_output_dir(dataset_dir)
  start = time.monotonic()
  request = sources.Request(archive=archive, image_dir=image_dir, url=url,
                            md5=md5, retries=retries, backoff=backoff,
                            staging_dir=dataset_dir)
  try:
    manifest = _convert(dataset_dir, source, request, num_shards, num_workers)
  except BaseException:
    if created and not os.listdir(dataset_dir):
      os.rmdir(dataset_dir)  # leave no trace of a failed first run
    raise
  counts = " + ".join(f"{entry['num_examples']} {split}"
                      for split, entry in manifest["splits"].items())
  log(f"wrote {counts} examples ({num_shards} file(s) per split) to "
      f"{dataset_dir} in {time.monotonic() - start:.1f} s")
  return manifest


def _convert(dataset_dir, source, request, num_shards, num_workers):
  """Loads the source, encoding parts as they come in, and writes the files."""
  with workers_lib.Workers(num_workers) as workers:
    encoder = workers_lib.Encoder(workers)
    splits, description = sources.SOURCES[source](request, workers,
                                                  encoder.submit)
    _check_shards(splits, num_shards)
    for split, (images, labels) in splits.items():
      if not encoder.has(split):  # not streamed in parts
        encoder.submit(split, 0, images, labels)
    return cifar10.write_dataset(dataset_dir, splits, num_shards=num_shards,
                                 source=description, write=encoder.write)


def sample_dataset_dir(log=None):
  """The bundled sample, converted once into `cache_dir()`/cifar10_sample.

  A no-op returning the path when the cache is complete and made from the
  bundled sample it holds now. Safe against concurrent callers: each converts
  into its own temporary folder, renamed into place.
  """
  parent = cache_dir()
  target = os.path.join(parent, SAMPLE_DIRNAME)
  expected = sources.sample_description()
  if _is_current(target, expected):
    return target
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{SAMPLE_DIRNAME}.tmp-", dir=parent)
  except OSError as e:
    raise UserError(f"cannot write the sample cache in {parent}: "
                    f"{e.strerror or e}") from None
  try:
    run(tmp, source="sample", log=log)
    _move_aside(target)
    try:
      os.rename(tmp, target)
    except OSError:
      if not _is_current(target, expected):  # not another caller's copy
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


def _is_current(dataset_dir, source):
  manifest = complete_manifest(dataset_dir)
  return manifest is not None and manifest.get("source") == source


def _move_aside(path):
  """Removes an outdated or partial folder (renamed away first, atomically)."""
  if not os.path.exists(path):
    return
  stale = f"{path}.stale-{os.getpid()}"
  try:
    os.rename(path, stale)
  except OSError:
    return  # already moved by another caller
  shutil.rmtree(stale, ignore_errors=True)
