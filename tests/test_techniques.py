"""Training techniques of issue 13 inside the trainer: schedules, optimizer
switch, label smoothing, preprocessing, AutoAugment, Cutout, top-5; resumed
runs equal uninterrupted ones, and default runs compute what they always did.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcifar import config as config_lib
from tfcifar import errors
from tfcifar import models
from tfcifar import run_dir as run_dir_lib
from tfcifar import train
from tfcifar import trainer as trainer_lib

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures",
                       "default_trajectory.json")
# The tiny configs whose metrics were recorded from main before issue 13 was
# merged (e7e8397/e248860) into fixtures/default_trajectory.json. (First
# recorded from b13dccb; the ~3e-3 by which main's recording differs in the
# BN run was then put down to main's changes, but it is the cross-CPU
# difference below: on the AVX-512 machine main gives b13dccb's 2.41565.)
DEFAULT_RUNS = {
    "sgd_bn_augment": dict(bn=True, augment=True),
    "momentum_unit": dict(optimizer="momentum", preprocess="unit"),
}
COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr")
# The fixture was recorded on one CPU (AVX2); another's kernels (AVX-512 and
# AMX oneDNN, same TensorFlow) sum in another order and 16 SGD steps amplify
# the ulps. Measured between the two: the BN run's losses differ by up to
# 3.1e-3 relative (epoch 2 train loss 1.98200 vs 1.98824, test 3.99428 vs
# 3.98792) and its accuracies by one image (train 47 vs 48 of 256, test 14 vs
# 13 of 100); momentum_unit by 5e-5. A changed default (a schedule, label
# smoothing, the preprocessing) moves them far more; the lr must be exact.
CROSS_CPU_LOSS = 1e-2  # relative
CROSS_CPU_IMAGES = 2


def tiny(model_dir, data_dir, **overrides):
  values = dict(vgg_stages="8,M,16,M", progress="none", steps_per_loop=3,
                model_dir=str(model_dir), data_dir=data_dir, batch_size=32,
                epochs=2, lr=0.05, seed=3, max_train_examples=256,
                max_test_examples=100)
  values.update(overrides)
  return config_lib.TrainConfig.from_flat(**values)


def run(config):
  assert trainer_lib.train_and_evaluate(
      config, tf.distribute.get_strategy(),
      log=lambda _: None) == run_dir_lib.EXIT_OK
  return run_dir_lib.RunDir(config.run.model_dir).read_metrics()


def assert_same_rows(rows, want, atol):
  assert [r["epoch"] for r in rows] == [r["epoch"] for r in want]
  for a, b in zip(rows, want):
    for column in COLUMNS:
      assert a[column] == pytest.approx(b[column], abs=atol), (column, a, b)


@pytest.mark.parametrize("name", sorted(DEFAULT_RUNS))
def test_default_runs_compute_what_they_computed_before(
    name, tmp_path, sample_data_dir):
  with open(FIXTURE) as f:
    want = json.load(f)["runs"][name]
  config = tiny(tmp_path / name, sample_data_dir, **DEFAULT_RUNS[name])
  rows = run(config)
  assert [r["epoch"] for r in rows] == [r["epoch"] for r in want]
  images = {"train": config.data.max_train_examples,
            "test": config.data.max_test_examples}
  for got, recorded in zip(rows, want):
    assert got["lr"] == recorded["lr"]
    for split, n in images.items():
      loss, acc = f"{split}_loss", f"{split}_accuracy"
      assert got[loss] == pytest.approx(recorded[loss], rel=CROSS_CPU_LOSS)
      assert abs(got[acc] - recorded[acc]) <= CROSS_CPU_IMAGES / n + 1e-6


def test_label_smoothing_loss_is_the_hand_computation():
  logits = np.random.RandomState(0).normal(size=(6, 10)).astype(np.float32)
  labels = np.array([0, 3, 9, 2, 2, 7])
  eps = 0.1
  log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  targets = np.full((6, 10), eps / 10)
  targets[np.arange(6), labels] += 1 - eps
  want = -(targets * log_p).sum(1)
  got = trainer_lib.smoothed_cross_entropy(labels, tf.constant(logits), eps)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  plain = trainer_lib.smoothed_cross_entropy(labels, tf.constant(logits), 0.0)
  np.testing.assert_allclose(plain, -log_p[np.arange(6), labels], rtol=1e-5)


def test_step_schedule_lr_column_top5_and_tensorboard(tmp_path,
                                                      sample_data_dir):
  config = tiny(tmp_path / "run", sample_data_dir, lr=0.1, epochs=4,
                lr_schedule="step", lr_decay_epochs="2",
                max_train_examples=64, max_test_examples=64)
  rows = run(config)
  assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.1, 0.01, 0.01])
  for r in rows:
    assert r["test_accuracy"] <= r["test_top5_accuracy"] <= 1
  per_step = {}
  for name in os.listdir(tmp_path / "run" / "train"):
    for event in tf.compat.v1.train.summary_iterator(
        str(tmp_path / "run" / "train" / name)):
      for v in event.summary.value:
        if v.tag == "learning_rate_per_step":
          per_step[event.step] = float(tf.make_ndarray(v.tensor))
  assert sorted(per_step) == list(range(1, 9))  # 2 steps x 4 epochs
  assert [per_step[s] for s in range(1, 9)] == pytest.approx(
      [0.1] * 4 + [0.01] * 4)


RESUMED = {
    # Adam, then SGD (momentum, sgd_lr) from epoch 2; warmup, a step
    # schedule, label smoothing. Interrupted after epoch 2: the SGD state
    # (momentum, step counter) comes back from the checkpoint.
    "optimizers": (dict(optimizer="adam", lr=0.002, switch_to_sgd_epoch=2,
                        sgd_lr=0.02, lr_schedule="step", lr_decay_epochs="2",
                        warmup_epochs=1, label_smoothing=0.1, epochs=3), 2),
    "data": (dict(preprocess="zca", autoaugment=True, cutout=8, augment=True,
                  bn=True, epochs=2, max_train_examples=96,
                  max_test_examples=32), 1),
}


@pytest.mark.parametrize("name", sorted(RESUMED))
def test_resumed_runs_equal_uninterrupted_ones(name, tmp_path,
                                               sample_data_dir):
  overrides, stop = RESUMED[name]
  straight = run(tiny(tmp_path / "straight", sample_data_dir, **overrides))
  config = tiny(tmp_path / "resumed", sample_data_dir, **overrides)
  assert len(run(config.replace(epochs=stop))) == stop
  resumed = run(config)
  assert_same_rows(resumed, straight, atol=1e-6)
  if name == "optimizers":  # the switch changed the lr: 0.002 -> 0.02 x 0.1
    assert [r["lr"] for r in straight] == pytest.approx([0.002, 0.02, 0.002])
  else:  # the run recorded the statistics it used
    saved = np.load(tmp_path / "resumed" / trainer_lib.PREPROCESS_FILENAME)
    assert saved["matrix"].shape == (3072, 3072)


def test_old_flagfiles_with_normalization_still_load(tmp_path):
  flagfile = tmp_path / "flags.txt"
  flagfile.write_text("--model=vgglike\n--normalization=unit\n--lr=0.1\n")
  try:
    train.FLAGS(["train", f"--flagfile={flagfile}"])
    config = train.config_from_flags()
  finally:
    train.FLAGS.unparse_flags()
  assert config.data.preprocess == "unit" and config.optim.lr == 0.1
  assert "--preprocess=unit" in config.flags_text()
  assert "--normalization" not in config.flags_text()


def test_normalization_contradicting_preprocess_is_refused():
  with pytest.raises(errors.UserError, match="--normalization=unit"):
    config_lib.TrainConfig.from_flat(normalization="unit", preprocess="zca")


def test_models_without_dropout_ignore_the_dropout_rate():
  # The zoo's default --dropout=0.5 must not stop vgglike (no dropout
  # layers): any rate builds the same network, with the same initial weights.
  weights = []
  for rate in (0.0, 0.5, 0.9):
    config = config_lib.TrainConfig.from_flat(
        model="vgglike", vgg_stages="8,M", dropout=rate)
    keras.utils.set_random_seed(0)
    model = models.build_model(config.model)
    assert not [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    weights.append(model.get_weights())
  for other in weights[1:]:
    assert len(other) == len(weights[0])
    for a, b in zip(weights[0], other):
      np.testing.assert_array_equal(a, b)
  keras.backend.clear_session()


def test_metrics_from_before_top5_still_read_and_append(tmp_path):
  run = run_dir_lib.RunDir(str(tmp_path))
  os.makedirs(run.path, exist_ok=True)
  with open(run.file(run_dir_lib.METRICS_FILENAME), "w") as f:
    f.write("epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,"
            "seconds\n1,2.3,0.1,2.2,0.12,0.05,1.5\n")
  rows = run.read_metrics()
  assert rows == [{"epoch": 1, "train_loss": 2.3, "train_accuracy": 0.1,
                   "test_loss": 2.2, "test_accuracy": 0.12, "lr": 0.05,
                   "seconds": 1.5}]
  run.append_metrics({"epoch": 2, "train_loss": 2.0, "train_accuracy": 0.2,
                      "test_loss": 2.1, "test_accuracy": 0.2,
                      "test_top5_accuracy": 0.6, "lr": 0.05, "seconds": 1.0})
  rows = run.read_metrics()
  assert "test_top5_accuracy" not in rows[0]  # left empty in the old row
  assert rows[1]["test_top5_accuracy"] == 0.6
  assert [r["epoch"] for r in rows] == [1, 2]
