"""The run directory: a training run that describes itself.

  <model_dir>/flags.txt      the resolved flags, loadable with --flagfile
  <model_dir>/config.json    the resolved TrainConfig (checked on resume)
  <model_dir>/data.json      sha256 of the data's files (checked on resume)
  <model_dir>/metrics.csv    one row per completed epoch
  <model_dir>/status.json    running|finished|diverged|failed, last epoch, metrics
  <model_dir>/activations.csv  (--histograms) percentiles of every post-BN
                             activation per epoch: the histograms, in brief
  <model_dir>/train, /test   TensorBoard events
  <model_dir>/checkpoints/   tf.train.Checkpoint of model, optimizer, epoch
  <model_dir>/model.keras    the final model

Every file is written through a temporary name and a rename.
"""

import csv
import io
import json
import math
import os

import numpy as np

from tfcifar.cifar10 import write_text_atomic
from tfcifar.errors import UserError

METRICS_FILENAME = "metrics.csv"
METRICS_HEADER = ("epoch", "train_loss", "train_accuracy", "test_loss",
                  "test_accuracy", "test_top5_accuracy", "lr", "seconds")
ACTIVATIONS_FILENAME = "activations.csv"
# Percentiles of a layer's activations written per epoch (--histograms).
ACTIVATION_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
ACTIVATIONS_HEADER = ("epoch", "layer", "mean", "std",
                      *(f"p{q}" for q in ACTIVATION_PERCENTILES))
STATUS_FILENAME = "status.json"
CONFIG_FILENAME = "config.json"
FLAGS_FILENAME = "flags.txt"
DATA_FILENAME = "data.json"
ERROR_FILENAME = "error.log"
MODEL_FILENAME = "model.keras"

# Process exit codes of `python -m tfcifar.train` (and the experiment runner).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3


class RunDir:
  """Reads and writes the files of one run directory."""

  def __init__(self, path):
    self.path = path

  def file(self, name):
    return os.path.join(self.path, name)

  # --- config and flags ---------------------------------------------------

  def write_config(self, config):
    """config.json ({flag: value}) and flags.txt (loadable with --flagfile)."""
    os.makedirs(self.path, exist_ok=True)
    write_text_atomic(self.file(CONFIG_FILENAME),
                      json.dumps(config.to_dict(), indent=1) + "\n")
    write_text_atomic(self.file(FLAGS_FILENAME), config.flags_text())

  def check_same_run(self, config):
    """Raises UserError when model_dir holds a run with other hyperparameters."""
    path = self.file(CONFIG_FILENAME)
    if not os.path.exists(path):
      return
    with open(path) as f:
      saved = json.load(f)
    if "preprocess" not in saved and "normalization" in saved:
      saved["preprocess"] = saved["normalization"]  # runs before issue 13
    current = config.identity()
    diffs = [f"--{k}={saved.get(k)!r} there, {v!r} now"
             for k, v in current.items() if k in saved and saved[k] != v]
    if diffs:
      raise UserError(f"--model_dir={self.path} holds a run with other flags "
                      f"({'; '.join(diffs)}); use another --model_dir")

  def check_same_data(self, data, data_dir):
    """Raises UserError when the run was trained on other data.

    `data` is `data_identity(manifest)`; runs from before data.json, and data
    without a manifest, are not checked.
    """
    path = self.file(DATA_FILENAME)
    if data is None or not os.path.exists(path):
      return
    with open(path) as f:
      saved = json.load(f)
    diffs = [f"{split} files sha256 {','.join(h[:12] for h in saved.get(split, []))}"
             f" there, {','.join(h[:12] for h in hashes)} now"
             for split, hashes in data.items() if saved.get(split) != hashes]
    if diffs:
      raise UserError(f"--model_dir={self.path} was trained on other data than "
                      f"--data_dir={data_dir} ({'; '.join(diffs)}); use another "
                      "--model_dir")

  def write_data(self, data):
    if data is not None:
      os.makedirs(self.path, exist_ok=True)
      write_text_atomic(self.file(DATA_FILENAME),
                        json.dumps(data, indent=1) + "\n")

  # --- metrics ------------------------------------------------------------

  def read_metrics(self):
    """The rows of metrics.csv as dicts of floats (epoch as int)."""
    return read_csv_rows(self.file(METRICS_FILENAME))

  def _write_rows(self, name, header, rows):
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
      # A column added since the row was written (an older run) stays empty.
      writer.writerow({k: _format(row[k]) if k in row else "" for k in header})
    write_text_atomic(self.file(name), out.getvalue())

  def truncate_metrics(self, last_epoch):
    """Drops rows after `last_epoch` (an epoch redone after an interruption),
    from metrics.csv and, where it exists, activations.csv."""
    for name, header, always in (
        (METRICS_FILENAME, METRICS_HEADER, True),
        (ACTIVATIONS_FILENAME, ACTIVATIONS_HEADER, False)):
      exists = os.path.exists(self.file(name))
      rows = read_csv_rows(self.file(name))
      kept = [r for r in rows if r["epoch"] <= last_epoch]
      if len(kept) != len(rows) or (always and not exists):
        self._write_rows(name, header, kept)

  def append_metrics(self, row):
    self._write_rows(METRICS_FILENAME, METRICS_HEADER,
                     self.read_metrics() + [row])

  def read_activations(self):
    """The rows of activations.csv (epoch int, layer str, the rest floats)."""
    return read_csv_rows(self.file(ACTIVATIONS_FILENAME))

  def append_activations(self, rows):
    self._write_rows(ACTIVATIONS_FILENAME, ACTIVATIONS_HEADER,
                     self.read_activations() + list(rows))

  # --- status -------------------------------------------------------------

  def read_status(self):
    """status.json, {} when absent or unreadable (a fresh run)."""
    try:
      with open(self.file(STATUS_FILENAME)) as f:
        status = json.load(f)
    except (OSError, ValueError):
      return {}
    return status if isinstance(status, dict) else {}

  def write_status(self, status, epoch, metrics=None, **extra):
    payload = {"status": status, "epoch": int(epoch),
               "metrics": {k: _json_number(v) for k, v in (metrics or {}).items()}}
    payload.update(extra)
    write_text_atomic(self.file(STATUS_FILENAME),
                      json.dumps(payload, indent=1) + "\n")


# Columns that every row has; an empty value elsewhere is a column added
# after the row was written (test_top5_accuracy in runs from before issue 13)
# and is left out of the row.
REQUIRED_COLUMNS = ("epoch", "layer")


def read_csv_rows(path):
  """A run's CSV file as dicts: epoch an int, layer a str, others floats
  (an empty value is left out); [] when the file does not exist. A malformed
  file is a one-line UserError naming the file and line."""
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    if not reader.fieldnames or "epoch" not in reader.fieldnames:
      raise UserError(f"{path} has no epoch column")
    rows = []
    for row in reader:
      try:
        rows.append({k: (int(float(v)) if k == "epoch" else
                         v if k == "layer" else float(v))
                     for k, v in row.items()
                     if v != "" or k in REQUIRED_COLUMNS})
      except (TypeError, ValueError):  # a missing, extra or non-number field
        raise UserError(f"{path}, line {reader.line_num}: malformed row "
                        f"{','.join(map(str, row.values()))!r}") from None
  return rows


def data_identity(manifest):
  """{split: [sha256 of each record file]} of a dataset's manifest (or None)."""
  if not manifest:
    return None
  return {split: [f["sha256"] for f in info["files"]]
          for split, info in sorted(manifest["splits"].items())}


def activation_rows(epoch, activations):
  """activations.csv rows of one epoch: {layer: array} -> percentiles."""
  rows = []
  for layer, values in activations.items():
    values = np.asarray(values, dtype=np.float64).ravel()
    percentiles = np.percentile(values, ACTIVATION_PERCENTILES)
    rows.append({"epoch": epoch, "layer": layer, "mean": float(values.mean()),
                 "std": float(values.std()),
                 **{f"p{q}": float(v) for q, v in
                    zip(ACTIVATION_PERCENTILES, percentiles)}})
  return rows


def _format(value):
  if isinstance(value, str):
    return value
  if isinstance(value, int):
    return str(value)
  return f"{value:.6g}"


def _json_number(value):
  value = float(value)
  return value if math.isfinite(value) else str(value)
