"""The run directory: a training run that describes itself.

  <model_dir>/flags.txt      the resolved flags, loadable with --flagfile
  <model_dir>/config.json    the resolved TrainConfig (checked on resume)
  <model_dir>/metrics.csv    one row per completed epoch
  <model_dir>/status.json    running|finished|diverged|failed, last epoch, metrics
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

from tfcifar.cifar10 import write_text_atomic
from tfcifar.errors import UserError

METRICS_FILENAME = "metrics.csv"
METRICS_HEADER = ("epoch", "train_loss", "train_accuracy", "test_loss",
                  "test_accuracy", "lr", "seconds")
STATUS_FILENAME = "status.json"
CONFIG_FILENAME = "config.json"
FLAGS_FILENAME = "flags.txt"

# Process exit codes of `python -m tfcifar.train`.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3


class RunDir:
  """Reads and writes the files of one run directory."""

  def __init__(self, path):
    self.path = path

  def file(self, name):
    return os.path.join(self.path, name)

  # --- config and flags ---------------------------------------------------

  def write_config(self, config, flags_text):
    os.makedirs(self.path, exist_ok=True)
    write_text_atomic(self.file(CONFIG_FILENAME),
                      json.dumps(config.to_dict(), indent=1) + "\n")
    write_text_atomic(self.file(FLAGS_FILENAME), flags_text)

  def check_same_run(self, config):
    """Raises UserError when model_dir holds a run with other hyperparameters."""
    path = self.file(CONFIG_FILENAME)
    if not os.path.exists(path):
      return
    with open(path) as f:
      saved = json.load(f)
    current = config.identity()
    diffs = [f"--{k}={saved.get(k)!r} there, {v!r} now"
             for k, v in current.items() if k in saved and saved[k] != v]
    if diffs:
      raise UserError(f"--model_dir={self.path} holds a run with other flags "
                      f"({'; '.join(diffs)}); use another --model_dir")

  # --- metrics ------------------------------------------------------------

  def read_metrics(self):
    """The rows of metrics.csv as dicts of floats (epoch as int)."""
    path = self.file(METRICS_FILENAME)
    if not os.path.exists(path):
      return []
    with open(path, newline="") as f:
      rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in rows]

  def _write_metrics(self, rows):
    out = io.StringIO()
    writer = csv.DictWriter(out, METRICS_HEADER, lineterminator="\n")
    writer.writeheader()
    for row in rows:
      writer.writerow({k: _format(row[k]) for k in METRICS_HEADER})
    write_text_atomic(self.file(METRICS_FILENAME), out.getvalue())

  def truncate_metrics(self, last_epoch):
    """Drops rows after `last_epoch` (an epoch redone after an interruption)."""
    rows = self.read_metrics()
    kept = [r for r in rows if r["epoch"] <= last_epoch]
    if len(kept) != len(rows) or not os.path.exists(
        self.file(METRICS_FILENAME)):
      self._write_metrics(kept)

  def append_metrics(self, row):
    self._write_metrics(self.read_metrics() + [row])

  # --- status -------------------------------------------------------------

  def read_status(self):
    path = self.file(STATUS_FILENAME)
    if not os.path.exists(path):
      return {}
    with open(path) as f:
      return json.load(f)

  def write_status(self, status, epoch, metrics=None, **extra):
    payload = {"status": status, "epoch": int(epoch),
               "metrics": {k: _json_number(v) for k, v in (metrics or {}).items()}}
    payload.update(extra)
    write_text_atomic(self.file(STATUS_FILENAME),
                      json.dumps(payload, indent=1) + "\n")


def _format(value):
  if isinstance(value, int):
    return str(value)
  return f"{value:.6g}"


def _json_number(value):
  value = float(value)
  return value if math.isfinite(value) else str(value)
