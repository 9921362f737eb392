"""Fuzzing the converter and the record reader: seeded random damages
(truncation, flipped bytes, missing members, wrong shapes and labels) each
give a one-line DataError/UserError (exit 2 in the tools) and leave nothing
that looks finished. The command line itself is tested on such an archive in
test_convert_tool.py."""

import os
import pickle
import shutil

import numpy as np
import pytest

from convert_helpers import (  # noqa: F401
    BATCHES, assert_nothing_finished, official_batch, official_files,
    quiet_run, write_tar)
from tfcifar import cifar10
from tfcifar import data
from tfcifar.errors import UserError

CASES = 200


def damaged_files(rng, kind):
  """The members of an official archive with one `kind` of damage."""
  name = BATCHES[rng.integers(len(BATCHES))]
  batch = official_batch(12, 0)
  if kind == "drop":
    return official_files(batches={name: None})
  if kind == "shape":
    rows, cols = int(rng.integers(0, 20)), int(rng.integers(1, 4000))
    if cols == 3072:
      cols += 1
    batch[b"data"] = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
  elif kind == "labels":
    labels = list(batch[b"labels"])
    if rng.random() < 0.5:
      labels[int(rng.integers(len(labels)))] = int(
          rng.choice([-1, 10, 11, 255, 10**6]))
    else:  # a label missing or one too many
      labels = labels[:-1] if rng.random() < 0.5 else labels + [0]
    batch[b"labels"] = labels
  return official_files(batches={name: batch})


def damaged_archive(tmp_path, seed):
  rng = np.random.default_rng(seed)
  kind = ("truncate", "flip", "drop", "shape", "labels")[seed % 5]
  path = tmp_path / f"damaged{seed}.tar.gz"
  if kind in ("truncate", "flip"):
    write_tar(path, official_files())
    raw = bytearray(path.read_bytes())
    if kind == "truncate":
      raw = raw[:int(rng.integers(1, len(raw)))]
    else:  # past the gzip header's mtime/os fields, which nothing checks
      raw[int(rng.integers(10, len(raw)))] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(raw))
  else:
    write_tar(path, damaged_files(rng, kind))
  return str(path), kind


def test_damaged_archives_fail_cleanly(tmp_path):
  kinds = {}
  for seed in range(CASES):
    path, kind = damaged_archive(tmp_path, seed)
    out = tmp_path / f"out{seed}"
    with pytest.raises(UserError) as raised:  # DataError is a UserError
      quiet_run(str(out), archive=path, num_workers=1)
    assert raised.value.exit_code == 2
    assert "\n" not in str(raised.value), (seed, kind, raised.value)
    assert_nothing_finished(str(out))
    kinds[kind] = kinds.get(kind, 0) + 1
  assert set(kinds.values()) == {CASES // 5}


def test_damaged_records_fail_cleanly(tmp_path, make_synthetic_dataset):
  source, _ = make_synthetic_dataset(num_train=40, num_test=20)
  rng = np.random.default_rng(0)
  for case in range(60):
    data_dir = str(tmp_path / f"data{case}")
    shutil.copytree(source, data_dir)
    split = ("train", "test")[case % 2]
    (path,) = cifar10.find_record_files(data_dir, split)
    raw = bytearray(open(path, "rb").read())
    if case % 3 == 0:
      raw = raw[:int(rng.integers(0, len(raw)))]
    elif case % 3 == 1:
      raw[int(rng.integers(len(raw)))] ^= int(rng.integers(1, 256))
    else:
      raw += bytes(rng.integers(0, 256, int(rng.integers(1, 64)),
                                dtype=np.uint8))
    with open(path, "wb") as f:
      f.write(bytes(raw))
    data.clear_cache()
    with pytest.raises(UserError) as raised:
      data.split_size(data_dir, split)
    assert "\n" not in str(raised.value)
    assert os.path.basename(path) in str(raised.value)


def test_fuzz_damages_are_not_trivial():
  """The damages really change the pickles the converter reads."""
  rng = np.random.default_rng(1)
  files = damaged_files(rng, "shape")
  changed = [n for n, d in files.items() if d is not None and
             d != official_files().get(n)]
  assert len(changed) == 1 and pickle.loads(files[changed[0]])
