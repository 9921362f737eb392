"""Everyday use, through the real commands: paths with ~ and $VARS, progress
lines, every bad value a one-line error before anything is written, the data
as part of a run's identity, failures that leave their trace."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tfcifar import config as config_lib
from tfcifar import run_dir as run_dir_lib
from tfcifar import trainer
from tfcifar.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--vgg_stages=8,M,16,M", "--batch_size=32", "--max_train_examples=256",
        "--max_test_examples=64", "--noxla", "--epochs=1"]


def train(*args, env=None):
  return subprocess.run([sys.executable, "-m", "tfcifar.train", *args],
                        env={**os.environ, **(env or {})}, cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def one_line_error(result, code=2):
  assert result.returncode == code, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  return lines[0]


def test_paths_expand_progress_logs_and_data_is_identity(
    tmp_path, sample_data_dir, make_synthetic_dataset):
  home = tmp_path / "home"
  shutil.copytree(sample_data_dir, home / "data")
  env = {"HOME": str(home), "RUNS": str(tmp_path / "runs")}
  result = train("--data_dir=~/data", "--model_dir=$RUNS/a", "--progress=log",
                 "--steps_per_loop=3", *TINY, env=env)
  assert result.returncode == 0, result.stderr
  run = tmp_path / "runs" / "a"
  assert (run / "metrics.csv").exists() and (run / "model.keras").exists()
  # --progress=log: a line every 3 of the 8 steps, then the epoch line.
  steps = [l for l in result.stdout.splitlines() if l.startswith("epoch 1 ")]
  assert [l.split(":")[0] for l in steps] == [
      "epoch 1 step 3/8", "epoch 1 step 6/8", "epoch 1 step 8/8"]
  assert all("images/s" in l and "s left" in l and "loss=" in l
             for l in steps)
  assert "epoch 1/1: train_loss=" in result.stdout
  saved = json.loads((run / "data.json").read_text())
  manifest = json.loads((home / "data" / "manifest.json").read_text())
  assert saved["train"] == [f["sha256"] for f in
                            manifest["splits"]["train"]["files"]]
  # The same run on other data is refused, saying what differs.
  other, _ = make_synthetic_dataset(num_train=256, num_test=64)
  line = one_line_error(train(f"--data_dir={other}", "--model_dir=$RUNS/a",
                              *TINY[:-1], "--epochs=2", env=env))
  assert "trained on other data" in line and "train files sha256" in line
  assert len(run_dir_lib.RunDir(str(run)).read_metrics()) == 1


@pytest.mark.parametrize("args, message", [
    (["--keep_checkpoints=0"], "--keep_checkpoints must be > 0"),
    (["--bn_momentum=1.5"], "--bn_momentum must be <= 1"),
    (["--bn", "--noise", "--noise_std=0.5"], "--noise_std must be >= 1"),
])
def test_every_range_is_checked_before_anything_is_written(tmp_path, args,
                                                           message):
  run = tmp_path / "run"
  line = one_line_error(train(*args, f"--model_dir={run}", *TINY))
  assert message in line
  assert not run.exists()


def test_manifest_that_is_not_an_object_is_one_line(tmp_path,
                                                    sample_data_dir):
  data = tmp_path / "data"
  shutil.copytree(sample_data_dir, data)
  (data / "manifest.json").write_text("[1, 2]\n")
  line = one_line_error(train(f"--data_dir={data}",
                              f"--model_dir={tmp_path / 'run'}", *TINY))
  assert "manifest.json is not a JSON object" in line
  # A failure before training leaves error.log, and no status.
  assert "not a JSON object" in (tmp_path / "run" / "error.log").read_text()
  assert not (tmp_path / "run" / "status.json").exists()


def test_user_error_during_training_leaves_status_failed(
    tmp_path, sample_data_dir, monkeypatch):
  def broken_evaluate(self):
    raise UserError("the test split went away")
  monkeypatch.setattr(trainer.Trainer, "evaluate", broken_evaluate)
  config = config_lib.TrainConfig.from_flat(
      vgg_stages="8,M", batch_size=64, max_train_examples=128,
      data_dir=sample_data_dir, model_dir=str(tmp_path / "run"), xla=False,
      progress="none", epochs=1)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="went away"):
    trainer.train_and_evaluate(config, tf.distribute.get_strategy(),
                               log=lambda _: None)
  status = json.loads((tmp_path / "run" / "status.json").read_text())
  assert status["status"] == "failed"
  assert status["error"] == "the test split went away"
  assert (tmp_path / "run" / "error.log").exists()


def test_experiment_scripts_give_one_line_errors(tmp_path):
  result = subprocess.run(
      [sys.executable, "experiments/run.py", "--study=bn_lr", "--dry_run",
       f"--runs_dir={tmp_path}", "--trainer_flags=--epochs=x"], cwd=ROOT,
      capture_output=True, text=True, timeout=120)
  assert "--epochs=x is not an integer" in one_line_error(result)
  run = tmp_path / "runs" / "bn_lr" / "bn-lr0.05"
  run.mkdir(parents=True)
  columns = len(run_dir_lib.METRICS_HEADER)  # epoch, then numbers
  (run / "metrics.csv").write_text(
      ",".join(run_dir_lib.METRICS_HEADER) + "\n"
      + ",".join(["1"] + ["0.5"] * (columns - 1)) + "\n"
      + ",".join(["2", "oops"] + ["0.5"] * (columns - 2)) + "\n")
  result = subprocess.run(
      [sys.executable, "experiments/plot.py", f"--runs_dir={tmp_path / 'runs'}",
       f"--out_dir={tmp_path / 'figures'}"], cwd=ROOT, capture_output=True,
      text=True, timeout=120)
  line = one_line_error(result)
  assert f"{run / 'metrics.csv'}, line 3: malformed row" in line


ITERATE_TWICE = """
import hashlib, sys
import numpy as np
from tfcifar import data

def digest(dataset):
  images, labels = zip(*[(i.numpy(), l.numpy()) for i, l in dataset])
  return hashlib.sha256(np.concatenate(images).tobytes() +
                        np.concatenate(labels).tobytes()).hexdigest()[:12]

kwargs = dict(batch_size=64, augment=True, seed=3, max_examples=256,
              normalize=False, corrupt="labels", corrupt_prob=0.5)
dataset = data.make_dataset(sys.argv[1], "train", **kwargs)
passes = [digest(dataset) for _ in range(2)]
fresh = [digest(data.make_dataset(sys.argv[1], "train", epoch=e, **kwargs))
         for e in range(2)]
labels = [sorted(np.concatenate([l.numpy() for _, l in dataset]).tolist())
          for _ in range(2)]
print(*passes, *fresh, labels[0] == labels[1])
"""


def test_a_dataset_iterated_again_draws_a_new_epoch(sample_data_dir):
  """As model.fit iterates it: pass k is epoch k (new order and crops), a pure
  function of (seed, pass); the label corruption stays fixed."""
  outputs = [subprocess.run([sys.executable, "-c", ITERATE_TWICE,
                             sample_data_dir], cwd=ROOT, capture_output=True,
                            text=True, timeout=300) for _ in range(2)]
  for result in outputs:
    assert result.returncode == 0, result.stderr
  pass0, pass1, fresh0, fresh1, same_labels = outputs[0].stdout.split()
  assert pass0 != pass1 and (pass0, pass1) == (fresh0, fresh1)
  assert same_labels == "True"
  assert outputs[0].stdout == outputs[1].stdout  # the same in every process
