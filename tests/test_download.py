"""The download: md5, retries, errors naming the URL."""

import hashlib
import http.server
import os
import socket
import threading

import pytest

from convert_helpers import (  # noqa: F401
    expected_official, official_archive, assert_records_equal,
    assert_nothing_finished, quiet_run)
from tfcifar import convert
from tfcifar.errors import DataError


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
