"""Downloads the CIFAR-10 archive: retries, backoff, md5 check, progress bar.

Transient failures (no connection, timeouts, HTTP 5xx/408/429, a short
transfer) are retried `retries` times, waiting backoff * 2**attempt seconds;
other HTTP errors and a checksum mismatch fail at once. The file is written
under a temporary name in the destination directory and removed on failure.
"""

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from tfcifar import cifar10
from tfcifar.cifar10 import remove_if_exists
from tfcifar.errors import DataError
from tfcifar.errors import UserError

DEFAULT_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DEFAULT_MD5 = "c58f30108f718f92721af3b95e74349a"
_BLOCK = 1 << 20
_TRANSIENT_HTTP = (408, 429)


class DownloadError(UserError):
  """The archive could not be downloaded (after retries)."""


class ChecksumError(DataError):
  """A file's md5 differs from the expected one."""


def check_md5(path, md5, name=None, actual=None):
  """Raises ChecksumError unless the md5 of `path` (or `actual`) is `md5`."""
  actual = actual or cifar10.file_digest(path, "md5")
  if actual != md5.lower():
    raise ChecksumError(f"{name or path} has md5 {actual}, expected {md5}: "
                        "a corrupt copy or not the CIFAR-10 python archive")


class _Progress:
  """A one-line progress bar on stderr, drawn only on a terminal."""

  def __init__(self, name, total, stream=None):
    self.name, self.total = name, total
    self.stream = stream or sys.stderr
    self.enabled = self.stream.isatty()
    self.start = self.last = time.monotonic()

  def update(self, done, final=False):
    now = time.monotonic()
    if not self.enabled or (now - self.last < 0.1 and not final):
      return
    self.last = now
    rate = done / max(now - self.start, 1e-6) / 1e6
    if self.total:
      filled = int(30 * done / self.total)
      text = (f"[{'#' * filled}{'.' * (30 - filled)}] "
              f"{100 * done / self.total:5.1f}% of {self.total / 1e6:.1f} MB")
    else:
      text = f"{done / 1e6:.1f} MB"
    self.stream.write(f"\r{self.name} {text} {rate:.1f} MB/s")
    if final:
      self.stream.write("\n")
    self.stream.flush()


def _fetch(url, path, timeout, name):
  """One attempt: streams `url` into `path`; returns its md5."""
  digest = hashlib.md5()
  request = urllib.request.Request(url, headers={"User-Agent": "tfcifar"})
  with urllib.request.urlopen(request, timeout=timeout) as response, \
      open(path, "wb") as f:
    total = int(response.headers.get("Content-Length") or 0)
    progress = _Progress(name, total)
    done = 0
    for block in iter(lambda: response.read(_BLOCK), b""):
      f.write(block)
      digest.update(block)
      done += len(block)
      progress.update(done)
    progress.update(done, final=True)
  if total and done != total:
    raise http.client.IncompleteRead(b"", total - done)
  return digest.hexdigest()


def _reason(error):
  if isinstance(error, urllib.error.HTTPError):
    return f"HTTP {error.code} {error.reason}"
  if isinstance(error, urllib.error.URLError):
    return str(error.reason)
  if isinstance(error, http.client.IncompleteRead):
    return f"transfer ended {error.expected} bytes short"
  return str(error) or type(error).__name__


def _is_transient(error):
  if isinstance(error, urllib.error.HTTPError):
    return error.code >= 500 or error.code in _TRANSIENT_HTTP
  return True


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException,
                   ConnectionError, TimeoutError)


def _fetch_with_retries(url, path, retries, backoff, timeout, name):
  error = None
  for attempt in range(retries + 1):
    if attempt:
      time.sleep(backoff * 2 ** (attempt - 1))
    try:
      return _fetch(url, path, timeout, name)
    except ValueError as e:  # urlopen: not a URL it can open
      raise DownloadError(f"cannot download {url}: {e}") from None
    except _NETWORK_ERRORS as e:
      if not _is_transient(e):
        raise DownloadError(f"cannot download {url}: {_reason(e)}") from None
      error = e
  raise DownloadError(f"cannot download {url} after {retries + 1} "
                      f"attempt(s): {_reason(error)}")


def download(url, dest_dir, md5=DEFAULT_MD5, retries=3, backoff=1.0,
             timeout=60.0):
  """Downloads `url` into a temporary file in `dest_dir`; returns its path.

  Checks the md5 (skipped when md5 is None). The caller removes the file.
  Raises DownloadError (unreachable after retries, or a permanent HTTP error)
  or ChecksumError; no file is left behind then.
  """
  name = os.path.basename(urllib.parse.urlparse(url).path) or "download"
  path = os.path.join(dest_dir, f".{name}.download-{os.getpid()}")
  try:
    actual = _fetch_with_retries(url, path, retries, backoff, timeout, name)
    if md5 and actual != md5.lower():
      raise ChecksumError(f"{url} has md5 {actual}, expected {md5}: a corrupt "
                          "download or not the CIFAR-10 python archive")
  except BaseException:
    remove_if_exists(path)
    raise
  return path
