"""The trainer: metrics, resume, divergence, distribution, the CLI."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfcifar
from tfcifar import config as config_lib
from tfcifar import data
from tfcifar import models
from tfcifar import run_dir as run_dir_lib
from tfcifar import trainer

TINY = dict(vgg_stages="8,M,16,M", width_multiplier=1.0, progress="none",
            steps_per_loop=3)
METRIC_COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def tiny_config(model_dir, data_dir, **overrides):
  values = dict(TINY, model_dir=str(model_dir), data_dir=data_dir,
                batch_size=32, epochs=2, lr=0.05, max_train_examples=256,
                max_test_examples=100)
  values.update(overrides)
  return config_lib.TrainConfig.from_flat(**values)


def run_in_process(config):
  return trainer.train_and_evaluate(config, tf.distribute.get_strategy(),
                                    log=lambda _: None)


def cli(*args, env=None, **kwargs):
  """Runs `python -m tfcifar.train` with `args`; returns the CompletedProcess."""
  full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
  return subprocess.run([sys.executable, "-m", "tfcifar.train", *args],
                        env=full_env, capture_output=True, text=True,
                        timeout=300, **kwargs)


def cli_flags(model_dir, data_dir, **overrides):
  values = dict(TINY, model_dir=str(model_dir), data_dir=data_dir,
                batch_size=32, epochs=2, lr=0.05, max_train_examples=256,
                max_test_examples=100)
  values.update(overrides)
  out = []
  for name, value in values.items():
    if isinstance(value, bool):
      out.append(f"--{name}" if value else f"--no{name}")
    else:
      out.append(f"--{name}={value}")
  return out


def metric_rows(model_dir):
  return run_dir_lib.RunDir(str(model_dir)).read_metrics()


def assert_rows_close(rows_a, rows_b, atol):
  assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b]
  for a, b in zip(rows_a, rows_b):
    for column in METRIC_COLUMNS:
      assert a[column] == pytest.approx(b[column], abs=atol), (column, a, b)


def test_loss_falls_and_run_dir_describes_itself(tmp_path, sample_data_dir):
  model_dir = tmp_path / "run"
  config = tiny_config(model_dir, sample_data_dir, bn=True, epochs=4,
                       max_train_examples=512, histograms=True)
  assert run_in_process(config) == run_dir_lib.EXIT_OK

  rows = metric_rows(model_dir)
  assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
  assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.1
  assert rows[-1]["train_accuracy"] > 0.2  # 10% is chance
  with open(model_dir / "metrics.csv") as f:
    assert next(csv.reader(f)) == list(run_dir_lib.METRICS_HEADER)
  status = json.loads((model_dir / "status.json").read_text())
  assert status["status"] == "finished" and status["epoch"] == 4
  assert status["metrics"]["test_accuracy"] == pytest.approx(
      rows[-1]["test_accuracy"])
  saved = (model_dir / "flags.txt").read_text()
  assert "--bn\n" in saved and "--lr=0.05\n" in saved
  # The final model loads (custom layers registered by `tfcifar.models`) and
  # predicts exactly like the weights of the last checkpoint.
  loaded = keras.saving.load_model(str(model_dir / "model.keras"))
  from_checkpoint = models.build_model(config.model)
  tf.train.Checkpoint(model=from_checkpoint).restore(
      tf.train.latest_checkpoint(str(model_dir / "checkpoints"))).expect_partial()
  images, _ = next(iter(data.make_dataset(sample_data_dir, "test",
                                          batch_size=16, shuffle=False)))
  np.testing.assert_allclose(loaded(images, training=False).numpy(),
                             from_checkpoint(images, training=False).numpy(),
                             atol=1e-5)
  # TensorBoard: scalars for train and test, the image grid, histograms.
  tags = _event_tags(model_dir / "train")
  assert {"loss", "accuracy", "learning_rate", "images_per_sec",
          "train_images"} <= tags
  assert any(t.startswith("post_bn/") for t in tags)
  # ... and their percentiles per epoch and layer in activations.csv.
  activations = run_dir_lib.RunDir(str(model_dir)).read_activations()
  layers = list(models.post_bn_activations_model(loaded).output)
  assert [(r["epoch"], r["layer"]) for r in activations] == [
      (epoch, layer) for epoch in (1, 2, 3, 4) for layer in layers]
  for r in activations:
    bands = [r[f"p{q}"] for q in run_dir_lib.ACTIVATION_PERCENTILES]
    assert bands == sorted(bands) and r["std"] > 0
  assert {"loss", "accuracy"} <= _event_tags(model_dir / "test")


def _event_tags(log_dir):
  tags = set()
  for name in os.listdir(log_dir):
    for event in tf.compat.v1.train.summary_iterator(str(log_dir / name)):
      tags.update(v.tag for v in event.summary.value)
  return tags


def test_metrics_match_a_hand_computation(tmp_path, make_synthetic_dataset):
  """One epoch of plain SGD redone step by step, eagerly, without the trainer."""
  data_dir, _ = make_synthetic_dataset(num_train=96, num_test=40)
  config = tiny_config(tmp_path / "run", data_dir, bn=True, epochs=1, lr=0.1,
                       max_train_examples=0, max_test_examples=0, seed=3)
  assert run_in_process(config) == run_dir_lib.EXIT_OK
  (row,) = metric_rows(tmp_path / "run")

  keras.utils.set_random_seed(config.optim.seed)
  model = models.build_model(config.model)
  losses, correct = [], []
  for images, labels in data.make_dataset(data_dir, "train", batch_size=32,
                                          seed=config.optim.seed, epoch=0):
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      per_example = keras.losses.sparse_categorical_crossentropy(
          labels, logits, from_logits=True)
      weights = [v for v in model.trainable_variables if v.ndim > 1]
      decay = config.model.weight_decay * sum(tf.reduce_sum(w ** 2) for w in weights)
      loss = tf.reduce_mean(per_example) + decay / 2
    grads = tape.gradient(loss, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads):
      variable.assign_sub(config.optim.lr * grad)
    losses.extend(per_example.numpy())
    correct.extend(np.argmax(logits, -1) == labels.numpy())
  assert len(losses) == 96
  assert row["train_loss"] == pytest.approx(np.mean(losses), abs=1e-4)
  assert row["train_accuracy"] == pytest.approx(np.mean(correct), abs=1e-6)

  test_losses, test_correct = [], []
  for images, labels in data.make_dataset(data_dir, "test", batch_size=7,
                                          shuffle=False):
    logits = model(images, training=False)
    test_losses.extend(keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True).numpy())
    test_correct.extend(np.argmax(logits, -1) == labels.numpy())
  assert len(test_losses) == 40
  assert row["test_loss"] == pytest.approx(np.mean(test_losses), abs=1e-4)
  assert row["test_accuracy"] == pytest.approx(np.mean(test_correct))


def test_divergence_ends_the_run_cleanly(tmp_path, sample_data_dir):
  model_dir = tmp_path / "run"
  config = tiny_config(model_dir, sample_data_dir, bn=False, lr=1e8,
                       epochs=3)
  assert run_in_process(config) == run_dir_lib.EXIT_DIVERGED
  status = json.loads((model_dir / "status.json").read_text())
  assert status["status"] == "diverged"
  assert status["diverged_epoch"] == status["epoch"] + 1
  assert len(metric_rows(model_dir)) == status["epoch"]
  # Running it again does not retrain: it reports the divergence again.
  assert run_in_process(config) == run_dir_lib.EXIT_DIVERGED


def test_resume_refuses_other_hyperparameters(tmp_path, sample_data_dir):
  config = tiny_config(tmp_path / "run", sample_data_dir, epochs=1)
  assert run_in_process(config) == run_dir_lib.EXIT_OK
  # More epochs is a continuation; another lr is another run.
  assert run_in_process(config.replace(epochs=2)) == run_dir_lib.EXIT_OK
  assert [r["epoch"] for r in metric_rows(tmp_path / "run")] == [1, 2]
  with pytest.raises(tfcifar.errors.UserError, match="--lr"):
    run_in_process(config.replace(lr=0.01, epochs=3))


def test_mixed_precision_and_noisy_bn_train(tmp_path, sample_data_dir):
  config = tiny_config(tmp_path / "run", sample_data_dir, bn=True, noise=True,
                       mixed_precision=True, epochs=1, xla=False,
                       max_train_examples=64, max_test_examples=32)
  try:
    assert run_in_process(config) == run_dir_lib.EXIT_OK
  finally:
    keras.mixed_precision.set_global_policy("float32")
  (row,) = metric_rows(tmp_path / "run")
  assert np.isfinite(row["train_loss"]) and np.isfinite(row["test_loss"])


# --- the command line, in subprocesses -------------------------------------


@pytest.mark.parametrize("overrides, flag", [
    (dict(model="resnet9000"), "--model"),
    (dict(lr=-1.0), "--lr"),
    (dict(epochs=0), "--epochs"),
    (dict(noise=True), "--noise"),
    (dict(corrupt="labels", corrupt_prob=1.5), "--corrupt_prob"),
    (dict(corrupt="blur"), "--corrupt"),
])
def test_bad_flags_are_named(overrides, flag, tmp_path):
  with pytest.raises(tfcifar.errors.UserError, match=flag):
    tiny_config(tmp_path / "run", "", **overrides)


def test_bad_command_lines_give_one_line_and_exit_2(tmp_path, sample_data_dir):
  cases = [
      ["--no_such_flag"],
      ["--lr=-1"],
      ["--data_dir=" + str(tmp_path / "missing")],
      ["--strategy=mirrored", "--num_cpu_devices=3", "--batch_size=32",
       "--data_dir=" + sample_data_dir],
  ]
  for args in cases:
    result = cli(*args, f"--model_dir={tmp_path / 'run'}", "--epochs=1")
    assert result.returncode == 2, (args, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, lines)
    assert not os.path.exists(tmp_path / "run" / "metrics.csv")


def test_sigkill_and_resume_give_the_same_rows(tmp_path, sample_data_dir):
  """Killed right after its first checkpoint, a noisy-BN run resumes exactly."""
  flags_of = lambda model_dir: cli_flags(  # pylint: disable=g-long-lambda
      model_dir, sample_data_dir, bn=True, noise=True, epochs=3, seed=5,
      xla=False, max_train_examples=512)
  assert cli(*flags_of(tmp_path / "straight")).returncode == 0

  killed_dir = tmp_path / "killed"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  process = subprocess.Popen(
      [sys.executable, "-m", "tfcifar.train", *flags_of(killed_dir)],
      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  # Committed: the state file names it (CheckpointManager writes the data
  # and index files first; a kill between them and the state file leaves
  # no checkpoint, and the run rightly restarts from epoch 1).
  checkpoints = str(killed_dir / "checkpoints")
  deadline = time.time() + 240
  while (tf.train.latest_checkpoint(checkpoints) is None and
         time.time() < deadline):
    if process.poll() is not None:
      break
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert len(metric_rows(killed_dir)) < 3, "the run was not killed mid-way"

  resumed = cli(*flags_of(killed_dir))
  assert resumed.returncode == 0, resumed.stderr
  assert "epochs 2..3" in resumed.stdout  # it resumed, it did not restart
  assert_rows_close(metric_rows(killed_dir), metric_rows(tmp_path / "straight"),
                    atol=1e-5)
  # TensorBoard is written after each checkpoint: no step twice.
  for split in ("train", "test"):
    steps = [(event.step, value.tag) for name in
             os.listdir(killed_dir / split) for event in
             tf.compat.v1.train.summary_iterator(str(killed_dir / split / name))
             for value in event.summary.value if value.tag == "loss"]
    assert sorted(steps) == sorted(set(steps)), (split, steps)
    assert {step for step, _ in steps} <= {1, 2, 3}


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


# BN (synchronized) and a leftover batch: 240 = 7 * 32 + 16 train images.
# Synchronized BN on several replicas runs the step without XLA (see
# trainer.step_jit_compile), so the reference does too: with XLA's other
# convolution kernels one argmax flips in epoch 2 (accuracy off by 1/224).
# 1 and 2 replicas still sum in another order (ulps per step), which a few
# epochs can grow past 2e-4: seed 3 ends epoch 3 with a test loss 3.4e-4
# off (seed 1: 1e-5), so the seed is part of the 2e-4.
DISTRIBUTED = dict(bn=True, seed=1, epochs=3, max_train_examples=240,
                   xla=False)
# The distributed runs and their reference use TensorFlow's own (Eigen) CPU
# kernels: oneDNN chooses its kernels by shape, so a replica's batch of 16
# is summed in another order than a device's 32, and 3 epochs amplify that
# past any tolerance that would still catch an algorithmic difference
# (measured on an AVX-512/AMX CPU: epoch-1 train loss 2.50351 on one device,
# 2.50181 on two replicas with oneDNN, equal to the last digit without it;
# unsynchronized BN gives 2.52776).
DISTRIBUTED_ENV = dict(TF_ENABLE_ONEDNN_OPTS="0")


@pytest.fixture(scope="module")
def single_device_rows(tmp_path_factory, sample_data_dir):
  """Three epochs of a BN model on one device (no XLA): the reference."""
  model_dir = tmp_path_factory.mktemp("single") / "run"
  result = cli(*cli_flags(model_dir, sample_data_dir, **DISTRIBUTED),
               env=DISTRIBUTED_ENV)
  assert result.returncode == 0, result.stderr
  return metric_rows(model_dir)


def test_mirrored_matches_single_device_and_resumes_exactly(
    tmp_path, sample_data_dir, single_device_rows):
  """Synchronized BN: 2 replicas compute what 1 does; a run stopped after
  epoch 1 and resumed writes the rows of the uninterrupted run."""
  flags_of = lambda name, **kw: cli_flags(  # pylint: disable=g-long-lambda
      tmp_path / name, sample_data_dir, strategy="mirrored",
      num_cpu_devices=2, **{**DISTRIBUTED, **kw})
  result = cli(*flags_of("mirrored"), env=DISTRIBUTED_ENV)
  assert result.returncode == 0, result.stderr
  assert "2 replica(s)" in result.stdout
  rows = metric_rows(tmp_path / "mirrored")
  assert_rows_close(rows, single_device_rows, atol=2e-4)
  assert json.loads((tmp_path / "mirrored" / "config.json").read_text())[
      "sync_bn"] is True
  assert cli(*flags_of("resumed", epochs=1),
             env=DISTRIBUTED_ENV).returncode == 0
  resumed = cli(*flags_of("resumed"), env=DISTRIBUTED_ENV)
  assert resumed.returncode == 0, resumed.stderr
  assert "epochs 2..3" in resumed.stdout
  timeless = lambda rows: [{k: v for k, v in r.items() if k != "seconds"}
                            for r in rows]
  assert timeless(metric_rows(tmp_path / "resumed")) == timeless(rows)


def test_two_workers_match_single_device(tmp_path, sample_data_dir,
                                         single_device_rows):
  """Synchronized BN over two processes computes what one device does.

  Each worker gets a contiguous half of every global batch, the split that
  Mirrored's two local replicas get (data.shard_order), so two workers train
  bit for bit as Mirrored does. (With examples w, w+2, ... per worker the
  sums were rounded otherwise and a max-pool near-tie flipped in step 3:
  train loss off by 1.7e-3 in epoch 1.)
  """
  model_dir = tmp_path / "multi"
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  args = cli_flags(model_dir, sample_data_dir, strategy="multi_worker",
                   **DISTRIBUTED)
  processes = []
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster,
                            "task": {"type": "worker", "index": index}})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=tf_config,
               **DISTRIBUTED_ENV)
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "tfcifar.train", *args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outputs = [p.communicate(timeout=300) for p in processes]
  for process, (_, err) in zip(processes, outputs):
    assert process.returncode == 0, err[-2000:]
  assert "2 replica(s)" in outputs[0][0]
  assert_rows_close(metric_rows(model_dir), single_device_rows, atol=2e-4)
  assert json.loads((model_dir / "config.json").read_text())["sync_bn"] is True
  # Only the chief wrote: no worker checkpoint directory is left behind.
  assert not [n for n in os.listdir(model_dir) if n.startswith(".worker")]


def test_mirrored_noisy_bn_trains_with_xla(tmp_path, sample_data_dir):
  """The stateless XLA step with BN moving stats and noise seeds per replica."""
  model_dir = tmp_path / "noisy"
  result = cli(*cli_flags(model_dir, sample_data_dir, bn=True, noise=True,
                          strategy="mirrored", epochs=1, histograms=True))
  assert result.returncode == 0, result.stderr
  (row,) = metric_rows(model_dir)
  assert np.isfinite(row["train_loss"]) and np.isfinite(row["test_loss"])
  assert any(t.startswith("post_bn/") for t in _event_tags(model_dir / "train"))
