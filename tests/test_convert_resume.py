"""Idempotence and interruption: a second run is a no-op, nothing half-written looks finished."""

import os

import pytest

from convert_helpers import (  # noqa: F401
    expected_official, official_archive, assert_records_equal,
    assert_nothing_finished, quiet_run)
from tfcifar import cifar10
from tfcifar import convert
from tfcifar.convert import workers as workers_lib
from tfcifar.errors import UserError


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
