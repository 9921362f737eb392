"""tfcifar.evaluate: confusion matrix, top-5, memorisation, the command."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfcifar import cifar10
from tfcifar import config as config_lib
from tfcifar import data
from tfcifar import evaluate
from tfcifar import run_dir as run_dir_lib
from tfcifar import saved_run
from tfcifar.data import corruptions
from tfcifar.errors import UserError


def cli(*args):
  return subprocess.run([sys.executable, "-m", "tfcifar.evaluate", *args],
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


# --- the maths ---------------------------------------------------------------


LABELS = np.array([0, 0, 1, 2, 2, 2, 1, 0])
PREDICTIONS = np.array([0, 1, 1, 2, 0, 2, 1, 0])
# Counted by hand: row = true class, column = predicted class.
EXPECTED_MATRIX = np.array([[2, 1, 0],
                            [0, 2, 0],
                            [1, 0, 2]])


def test_confusion_matrix_is_exact_and_its_trace_is_the_accuracy():
  matrix = evaluate.confusion_matrix(LABELS, PREDICTIONS, 3)
  np.testing.assert_array_equal(matrix, EXPECTED_MATRIX)
  assert np.trace(matrix) / matrix.sum() == np.mean(LABELS == PREDICTIONS)
  assert evaluate.per_class_accuracy(matrix) == pytest.approx([2 / 3, 1, 2 / 3])
  # A class without examples has no accuracy (not 0, not a division error).
  assert evaluate.per_class_accuracy(
      evaluate.confusion_matrix(LABELS, PREDICTIONS, 4))[3] is None


def test_summary_accuracy_matches_the_predictions():
  logits = np.eye(3)[PREDICTIONS] * 5.0
  summary, matrix = evaluate.summarize(logits, LABELS, ("a", "b", "c"), "test")
  assert summary["test_accuracy"] == 6 / 8
  assert summary["per_class_accuracy"] == pytest.approx(
      {"a": 2 / 3, "b": 1.0, "c": 2 / 3})
  np.testing.assert_array_equal(matrix, EXPECTED_MATRIX)


def test_top5_accuracy_equals_a_hand_computation():
  # Each row: logits 0..9 in a fixed shuffled order; the label's rank by hand.
  logits = np.array([
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],   # label 4: 5th largest -> in top 5
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],   # label 5: 6th largest -> out
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],   # label 9: largest -> in
      [3, 1, 4, 0, 5, 9, 2, 6, 8, 7],   # label 1: 9th largest -> out
  ], np.float32)
  labels = np.array([4, 5, 9, 1])
  assert evaluate.top_k_accuracy(logits, labels, 5) == 0.5
  assert evaluate.top_k_accuracy(logits, labels, 1) == 0.25  # only row 2


def test_confidence_and_calibration_error_equal_a_hand_computation():
  # Two classes, softmax probabilities chosen by hand (logits = log p).
  probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.62, 0.38]])
  labels = np.array([0, 1, 1, 0])  # right, wrong, right, right
  confidence, ece = evaluate.calibration(np.log(probabilities), labels)
  assert confidence == pytest.approx((0.9 + 0.9 + 0.7 + 0.62) / 4)
  # 15 bins of width 1/15: 0.9 -> (13/15, 14/15] with accuracy 1/2;
  # 0.7 -> (10/15, 11/15] and 0.62 -> (9/15, 10/15], each accuracy 1.
  assert ece == pytest.approx(2 / 4 * 0.4 + 1 / 4 * 0.3 + 1 / 4 * 0.38)
  # One bin: |overall accuracy - mean confidence|.
  assert evaluate.calibration(np.log(probabilities), labels, bins=1)[1] == (
      pytest.approx(abs(0.75 - 0.78)))
  summary, _ = evaluate.summarize(np.log(probabilities), labels, ("a", "b"),
                                  "test")
  assert summary["mean_confidence"] == pytest.approx(0.78)
  assert summary["expected_calibration_error"] == pytest.approx(0.37)


def test_memorisation_split_on_known_corrupted_indices():
  true = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  corrupted = true.copy()
  changed = [1, 4, 7, 8]
  corrupted[changed] = [5, 0, 2, 3]
  predictions = np.array([0, 5, 2, 9, 4, 5, 6, 7, 3, 0])
  # changed: 1 (pred 5 = corrupted), 4 (pred 4 = true), 7 (pred 7 = true),
  #          8 (pred 3 = corrupted) -> 2/4 vs corrupted, 2/4 vs true.
  # kept: 0, 2, 3, 5, 6, 9 -> right at 0, 2, 5, 6 -> 4/6 against both.
  split = evaluate.memorisation_split(predictions, corrupted, true)
  assert split["changed_fraction"] == 0.4
  assert split["changed"] == {"examples": 4,
                              "accuracy_vs_corrupted_labels": 0.5,
                              "accuracy_vs_true_labels": 0.5}
  assert split["kept"]["examples"] == 6
  assert split["kept"]["accuracy_vs_corrupted_labels"] == pytest.approx(4 / 6)
  assert split["kept"]["accuracy_vs_true_labels"] == pytest.approx(4 / 6)


def test_confusion_csv_format():
  text = evaluate.confusion_csv(EXPECTED_MATRIX, ("a", "b", "c"))
  assert text.splitlines() == ["true\\predicted,a,b,c", "a,2,1,0", "b,0,2,0",
                               "c,1,0,2"]


def test_row_normalised_rows_sum_to_one():
  fractions = evaluate.row_normalised(np.vstack([EXPECTED_MATRIX, [0, 0, 0]]))
  np.testing.assert_allclose(fractions.sum(axis=1), [1, 1, 1, 0])


# --- reading a run -----------------------------------------------------------


def test_load_run_config_reads_config_json(tmp_path, tiny_run):
  config = saved_run.load_run_config(tiny_run)
  with open(os.path.join(tiny_run, "config.json")) as f:
    saved = json.load(f)
  assert config.to_dict() == saved
  assert saved_run.is_label_corruption(config)
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "config.json").write_text("{not json")
  for model_dir, message in ((str(bad), "not valid JSON"),
                             (str(tmp_path), "not a run directory"),
                             (str(tmp_path / "missing"), "not a directory"),
                             ("", "--model_dir is required")):
    with pytest.raises(UserError, match=message):
      saved_run.load_run_config(model_dir)


def test_unfinished_run_loads_its_latest_checkpoint(tmp_path, tiny_run):
  config = saved_run.load_run_config(tiny_run)
  final, source, epoch = saved_run.load_model(tiny_run, config)
  assert (source, epoch) == ("model.keras", 1)
  unfinished = str(tmp_path / "unfinished")
  shutil.copytree(tiny_run, unfinished)
  os.remove(os.path.join(unfinished, "model.keras"))
  restored, source, epoch = saved_run.load_model(unfinished, config)
  assert (source, epoch) == (os.path.join("checkpoints", "ckpt-1"), 1)
  inputs = np.random.default_rng(0).normal(size=(4, 32, 32, 3))
  np.testing.assert_allclose(restored.predict_on_batch(inputs),
                             final.predict_on_batch(inputs), atol=1e-5)
  shutil.rmtree(os.path.join(unfinished, "checkpoints"))
  with pytest.raises(UserError, match="neither model.keras nor a checkpoint"):
    saved_run.load_model(unfinished, config)


def test_train_split_of_a_label_corruption_run(tiny_run, sample_data_dir):
  summary, out_dir = evaluate.evaluate_run(tiny_run, "train")
  assert out_dir == os.path.join(tiny_run, "evaluation", "train")
  # The changed examples, recomputed from the seed: corruption is a pure
  # function of (labels, p, seed), and the run read the first 256 examples.
  _, clean = data.split_arrays(sample_data_dir, "train")
  changed = (corruptions.corrupt_labels(clean, 0.5, 0) != clean)[:256]
  split = summary["memorisation"]
  assert split["changed"]["examples"] == changed.sum()
  assert split["kept"]["examples"] == 256 - changed.sum()
  # Against the labels it trained on, the two groups make up the accuracy.
  overall = (split["changed"]["accuracy_vs_corrupted_labels"] * changed.sum()
             + split["kept"]["accuracy_vs_corrupted_labels"] *
             (256 - changed.sum())) / 256
  assert summary["train_accuracy"] == pytest.approx(overall)
  assert summary["examples"] == 256


# --- the command -------------------------------------------------------------


def test_command_on_a_tiny_run(tiny_run):
  result = cli(f"--model_dir={tiny_run}")
  assert result.returncode == 0, result.stderr
  out_dir = os.path.join(tiny_run, "evaluation", "test")
  with open(os.path.join(out_dir, "summary.json")) as f:
    summary = json.load(f)
  # The trainer measured the same model on the same 100 test images.
  last = run_dir_lib.RunDir(tiny_run).read_metrics()[-1]
  assert summary["test_accuracy"] == pytest.approx(last["test_accuracy"],
                                                   abs=1e-6)
  assert summary["loss"] == pytest.approx(last["test_loss"], rel=1e-4)
  assert summary["test_accuracy"] <= summary["top5_accuracy"] <= 1.0
  with open(os.path.join(out_dir, "confusion_matrix.csv")) as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["true\\predicted", *cifar10.CLASS_NAMES]
  assert [r[0] for r in rows[1:]] == list(cifar10.CLASS_NAMES)
  counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
  assert counts.sum() == 100
  assert np.trace(counts) / 100 == pytest.approx(summary["test_accuracy"])
  assert "memorisation" not in summary  # the test labels are clean
  names = os.listdir(out_dir)
  assert "confusion_matrix.png" in names
  assert any(n.startswith("events.out.tfevents") for n in names)
  assert not any(".tmp" in n for n in names)


def test_bad_run_directory_is_one_line_and_exit_2(tmp_path):
  result = cli(f"--model_dir={tmp_path}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f"error: --model_dir={tmp_path} is not a run directory (no config.json)"]
