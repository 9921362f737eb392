"""The command-line tool: tfcifar-convert, python -m tfcifar.convert, tools/."""

import json
import os
import subprocess
import sys

import pytest

from convert_helpers import (  # noqa: F401
    expected_official, official_archive, official_files, write_tar,
    assert_records_equal, assert_nothing_finished, _truncated)
from tfcifar import cifar10


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The three ways to start the tool, one per case (each process imports TF).
TOOLS = {
    "truncated": [sys.executable,
                  os.path.join(REPO, "tools", "download_and_convert_cifar10.py")],
    "unwritable": [os.path.join(os.path.dirname(sys.executable),
                                "tfcifar-convert")],
    "ok": [sys.executable, "-m", "tfcifar.convert"],
    "bad_header": [sys.executable, "-m", "tfcifar.convert"],
}


@pytest.fixture(scope="module")
def tool_runs(tmp_path_factory, official_archive):
  """Runs the tool on a few cases at once (each process imports TF)."""
  tmp = tmp_path_factory.mktemp("tool")
  truncated = _truncated(tmp)["archive"]
  bad_header = bytearray(open(write_tar(tmp / "plain.tar", official_files(),
                                        mode="w"), "rb").read())
  bad_header[512 + 148] ^= 0x01  # the checksum of the second header
  (tmp / "bad_header.tar").write_bytes(bytes(bad_header))
  (tmp / "a_file").write_text("x")
  cases = {
      "bad_header": [f"--archive={tmp}/bad_header.tar",
                     f"--dataset_dir={tmp}/bad_header"],
      "truncated": [f"--archive={truncated}", f"--dataset_dir={tmp}/bad"],
      "unwritable": [f"--archive={official_archive}",
                     f"--dataset_dir={tmp}/a_file/out"],
      "ok": [f"--archive={official_archive}", f"--dataset_dir={tmp}/ok",
             "--num_shards=2"],
  }
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  procs = {name: subprocess.Popen(TOOLS[name] + args, env=env,
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
    ("bad_header", "bad_header.tar is not a tar archive (bad header checksum at byte 512)"),
])
def test_tool_errors_are_one_line(tool_runs, case, message):
  tmp, results = tool_runs
  code, _, stderr = results[case]
  assert code == 2
  assert "Traceback" not in stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr
  assert message in lines[0]
  if case in ("truncated", "bad_header"):
    assert_nothing_finished(str(tmp / ("bad" if case == "truncated"
                                       else case)))


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
