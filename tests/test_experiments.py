"""Tests of the studies: flagfiles, the sweep runner, the plotter, hparams.

Most tests drive the runner with tests/fixtures/fake_trainer.py (the trainer's
contract without TensorFlow, a fraction of a second per run). Only
`test_smoke_sweep_with_real_trainer` runs `python -m tfcifar.train`.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from experiments import plot  # noqa: E402
from experiments import run as runner  # noqa: E402
from experiments import studies  # noqa: E402

FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
FIXTURE_RUNS = os.path.join(FIXTURES, "runs")
FAKE_TRAINER = f"{sys.executable} {os.path.join(FIXTURES, 'fake_trainer.py')}"
RUN_PY = os.path.join(REPO_ROOT, "experiments", "run.py")
PLOT_PY = os.path.join(REPO_ROOT, "experiments", "plot.py")


def run_sweep(*args, cwd=None, env=None, timeout=120):
  return subprocess.run([sys.executable, RUN_PY, *args], cwd=cwd,
                        env={**os.environ, **(env or {})}, timeout=timeout,
                        capture_output=True, text=True)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def invocations(model_dir):
  with open(os.path.join(model_dir, "invocations.txt")) as f:
    return f.read().split("\n")[:-1]


def metric_epochs(model_dir):
  with open(os.path.join(model_dir, "metrics.csv")) as f:
    lines = f.read().split("\n")[1:]
  return [int(line.split(",")[0]) for line in lines if line]


# --- studies and flagfiles ---------------------------------------------------


def test_studies_expand_into_the_expected_runs():
  keys = {name: [r.name for r in study.runs]
          for name, study in studies.STUDIES.items()}
  assert keys == {
      "bn_lr": ["bn-lr0.01", "bn-lr0.05", "bn-lr0.1", "bn-lr0.5",
                "nobn-lr0.01", "nobn-lr0.05", "nobn-lr0.1", "nobn-lr0.5"],
      "bn_noise": ["bn", "bn-noise", "nobn"],
      "augmentation": ["noaug", "aug"],
      "label_corruption": [f"labels-p{p}" for p in
                           ("0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6",
                            "0.7", "0.8", "0.9", "1.0")],
      "image_corruption": ["shuffled_pixels", "random_pixels", "gaussian"],
  }
  runs = studies.all_runs()
  assert runs["bn_lr/nobn-lr0.5"].flags == ("--nobn", "--nonoise", "--lr=0.5")
  assert runs["bn_lr/nobn-lr0.5"].label == "no BN, lr=0.5"
  assert runs["bn_noise/bn-noise"].flags == ("--bn", "--noise")
  assert runs["augmentation/noaug"].flags == ("--noaugment",)
  assert runs["label_corruption/labels-p0.3"].flags == (
      "--corrupt=labels", "--corrupt_prob=0.3")
  assert runs["image_corruption/gaussian"].flags == ("--corrupt=gaussian",)
  assert [s.name for s in studies.get("all")] == list(studies.STUDIES)
  for key, _ in studies.SUMMARY_RUNS + sum(
      (s.references for s in studies.STUDIES.values()), ()):
    assert key in runs


def test_flagfiles_resolve_from_the_repo_root_with_base_defaults(monkeypatch):
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from tfcifar import config as config_lib
  for study in studies.STUDIES.values():
    args = runner.expand_flagfiles([f"--flagfile={study.flagfile}"], REPO_ROOT)
    assert not any(a.startswith("--flagfile") for a in args)
    assert int(runner.flag_value(args, "epochs")) >= 50
    # The trainer's flags read the same file into the study's defaults.
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    monkeypatch.chdir(REPO_ROOT)
    flag_values(["trainer", f"--flagfile={study.flagfile}"])
    config = config_lib.from_flags(flag_values)
    assert (config.model.name, config.optim.optimizer, config.model.weight_decay,
            config.optim.batch_size, config.model.vgg_stages) == (
                "vgglike", "sgd", 1e-4, 128, "vgg16"), study.name
    assert config.optim.epochs == int(runner.flag_value(args, "epochs"))
  with pytest.raises(runner.cli.UsageError, match="missing.cfg"):
    runner.expand_flagfiles(["--flagfile=flags/missing.cfg"], REPO_ROOT)
  augment = runner.expand_flagfiles(["--flagfile=flags/augment.cfg"],
                                    REPO_ROOT)
  assert "--augment" in augment and "--noaugment" not in augment
  assert runner.flag_value(augment, "lr") == "0.05" and "--bn" in augment


def test_run_command_has_flagfile_swept_flags_and_model_dir(tmp_path):
  (job,) = runner.make_jobs(studies.get("bn_lr"), str(tmp_path), smoke=True,
                            data_dir="/data", trainer_flags="--epochs=3",
                            patterns=["bn_lr/nobn-lr0.1"])
  assert job.command == [
      sys.executable, "-m", "tfcifar.train", "--flagfile=flags/bn_lr.cfg",
      "--nobn", "--nonoise", "--lr=0.1", *studies.SMOKE_FLAGS,
      "--data_dir=/data", "--epochs=3",
      f"--model_dir={tmp_path}/bn_lr/nobn-lr0.1"]
  assert job.epochs == 3  # --trainer_flags win over smoke and flagfile


def test_study_flags_reach_only_their_study_after_trainer_flags(tmp_path):
  study_flags = runner.parse_study_flags(
      ["bn_noise:--epochs=50 --lr=0.2", "bn_noise:--noxla"],
      list(studies.STUDIES))
  assert study_flags == {"bn_noise": ["--epochs=50", "--lr=0.2", "--noxla"]}
  jobs = runner.make_jobs(studies.select(["bn_lr", "bn_noise"]),
                          str(tmp_path), trainer_flags="--epochs=3",
                          study_flags=study_flags)
  by_study = collections.defaultdict(set)
  for job in jobs:
    by_study[job.run.study].add(job.epochs)
    tail = job.command[-5:-1] if job.run.study == "bn_noise" else []
    if job.run.study == "bn_noise":  # after --trainer_flags, so they win
      assert tail == ["--epochs=3", "--epochs=50", "--lr=0.2", "--noxla"]
    else:
      assert "--epochs=50" not in job.command and "--noxla" not in job.command
  assert by_study == {"bn_lr": {3}, "bn_noise": {50}}


@pytest.mark.parametrize("value, message", [
    ("nope:--epochs=5", "STUDY:FLAGS"),
    ("--epochs=5", "STUDY:FLAGS"),
    ("bn_noise:--seed=3", "--seed"),
    ("bn_noise:--model_dir=x", "--model_dir"),
    ("bn_noise:'--lr=1", "--study_flags"),
])
def test_bad_study_flags_are_usage_errors(value, message):
  with pytest.raises(runner.cli.UsageError, match=message):
    runner.parse_study_flags([value], list(studies.STUDIES))


def test_cpu_profile_gives_bn_noise_its_own_epochs():
  args = runner.expand_flagfiles(["--flagfile=flags/cpu_scale.cfg"],
                                 REPO_ROOT)
  assert ("--study_flags=bn_noise:--max_train_examples=0 --epochs=10"
          in args)


# --- the runner, with the fake trainer ---------------------------------------


def test_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path):
  env = {"FAKE_DIVERGE_LR": "0.5"}
  args = ("--study=bn_lr", "--runs_dir=runs", f"--trainer={FAKE_TRAINER}",
          "--trainer_flags=--epochs=3")
  result = run_sweep(*args, cwd=tmp_path, env=env)  # relative runs_dir
  assert result.returncode == 0, result.stderr
  runs_dir = tmp_path / "runs" / "bn_lr"
  diverged = read_json(runs_dir / "nobn-lr0.5" / "status.json")
  assert diverged["status"] == "diverged" and diverged["diverged_epoch"] == 2
  for run in studies.STUDIES["bn_lr"].runs:
    if run.name != "nobn-lr0.5":
      assert read_json(runs_dir / run.name / "status.json")["status"] == (
          "finished")
      assert metric_epochs(runs_dir / run.name) == [1, 2, 3]
  summary = result.stdout.split("\nsummary (")[1].strip().split("\n")[1:]
  assert len(summary) == 8
  assert [l for l in summary if "nobn-lr0.5" in l][0].split()[1] == "diverged"
  assert "bn_lr/bn-lr0.5" in summary[3] and "finished" in summary[3]
  # Restarted: nothing left to do, the diverged run is not tried again.
  again = run_sweep(*args, cwd=tmp_path, env=env)
  assert again.returncode == 0
  assert invocations(runs_dir / "nobn-lr0.5") == ["start 0", "diverged"]
  assert invocations(runs_dir / "bn-lr0.01") == ["start 0", "finished"]


def test_failed_run_is_reported_and_the_sweep_goes_on(tmp_path):
  result = run_sweep("--study=label_corruption", f"--runs_dir={tmp_path}",
                     f"--trainer={FAKE_TRAINER}", "--trainer_flags=--epochs=1",
                     "--runs=*/labels-p0.[123]", env={"FAKE_FAIL_PROB": "0.2"})
  assert result.returncode == 1
  line = [l for l in result.stdout.split("\n")
          if l.startswith("label_corruption/labels-p0.2 ")][-1]
  assert "failed" in line and "exit 1: error: something broke" in line
  for p in ("0.1", "0.3"):
    status = read_json(tmp_path / "label_corruption" / f"labels-p{p}" /
                       "status.json")
    assert status["status"] == "finished"
  assert not (tmp_path / "label_corruption" / "labels-p0.4").exists()


def test_stopped_sweep_restarts_without_redoing_finished_runs(tmp_path):
  runs_dir = tmp_path / "bn_lr"
  args = [sys.executable, RUN_PY, "--study=bn_lr", f"--runs_dir={tmp_path}",
          f"--trainer={FAKE_TRAINER}", "--trainer_flags=--epochs=4"]
  env = {**os.environ, "FAKE_EPOCH_SECONDS": "0.15"}
  sweep = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
  names = [r.name for r in studies.STUDIES["bn_lr"].runs]
  third = runs_dir / names[2] / "status.json"
  deadline = time.monotonic() + 60
  while not (third.exists() and read_json(third)["epoch"] >= 2):
    assert time.monotonic() < deadline and sweep.poll() is None
    time.sleep(0.02)
  sweep.send_signal(signal.SIGTERM)  # stops halfway through the third run
  out, _ = sweep.communicate(timeout=60)
  assert sweep.returncode == 130, out
  assert read_json(third)["status"] == "running"
  assert invocations(runs_dir / names[2]) == ["start 0", "interrupted"]
  assert not (runs_dir / names[3]).exists()
  assert "not started" in out

  restarted = subprocess.run(args, env=env, capture_output=True, text=True,
                             timeout=60)
  assert restarted.returncode == 0, restarted.stdout + restarted.stderr
  for name in names[:2]:  # finished before the stop: not run again
    assert invocations(runs_dir / name) == ["start 0", "finished"]
  resumed = invocations(runs_dir / names[2])
  assert resumed[:2] == ["start 0", "interrupted"] and resumed[3] == "finished"
  assert int(resumed[2].split()[1]) >= 2  # resumed from its last epoch
  for name in names:
    assert read_json(runs_dir / name / "status.json")["status"] == "finished"
    assert metric_epochs(runs_dir / name) == [1, 2, 3, 4]


def test_finished_runs_are_resumed_when_more_epochs_are_asked(tmp_path):
  base = ("--study=augmentation", f"--runs_dir={tmp_path}",
          f"--trainer={FAKE_TRAINER}")
  assert run_sweep(*base, "--trainer_flags=--epochs=1").returncode == 0
  assert run_sweep(*base, "--trainer_flags=--epochs=1").returncode == 0
  assert run_sweep(*base, "--trainer_flags=--epochs=2").returncode == 0
  assert invocations(tmp_path / "augmentation" / "aug") == [
      "start 0", "finished", "start 1", "finished"]
  assert metric_epochs(tmp_path / "augmentation" / "aug") == [1, 2]


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path):
  result = run_sweep("--study=all", f"--runs_dir={tmp_path}", "--dry_run")
  assert result.returncode == 0
  lines = result.stdout.strip().split("\n")
  assert len(lines) == len(studies.all_runs()) + 1
  assert "--flagfile=flags/augment.cfg --augment" in lines[12]
  assert lines[-1] == "27 runs, 0 done, 2150 epochs to train"
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--study=nope"], "--study=nope"),
    (["--study=bn_lr", "--parallel=0"], "--parallel must be >= 1"),
    (["--study=bn_lr", "--runs=zzz"], "matches no run"),
    (["--study=bn_lr", "--trainer_flags=--model_dir=x"], "--model_dir"),
    (["--study=bn_lr", "--study_flags=bn_lr--epochs=2"], "STUDY:FLAGS"),
    ([], "--study is required"),
])
def test_bad_runner_flags_are_one_line_and_exit_2(args, message):
  result = run_sweep(*args, "--dry_run")
  assert result.returncode == 2
  assert result.stderr.count("\n") == 1 and message in result.stderr


# --- the plotter -------------------------------------------------------------


def test_study_figure_draws_the_lines_of_the_fixture():
  runs = plot.load_runs(FIXTURE_RUNS)
  fig = plot.study_figure(studies.STUDIES["bn_lr"], runs)
  assert [ax.get_title() for ax in fig.axes] == [
      "train loss", "train accuracy", "test accuracy"]
  columns = {"train loss": 1, "train accuracy": 2, "test accuracy": 4}
  expected = {  # (label, data rows) in the study's order: the fixture files
      "BN, lr=0.05": [[1, 1.8, 0.35, 1.6, 0.42], [2, 1.2, 0.55, 1.3, 0.52],
                      [3, 0.9, 0.68, 1.4, 0.5]],
      "no BN, lr=0.05 (running, epoch 2)": [[1, 2.1, 0.2, 2.0, 0.25],
                                            [2, 1.9, 0.3, 1.85, 0.33]],
      "no BN, lr=0.5 (diverged in epoch 2)": [[1, 2.25, 0.12, 2.3, 0.1]],
  }
  for ax in fig.axes:
    lines = ax.get_lines()
    assert [l.get_label() for l in lines] == list(expected)
    for line, rows in zip(lines, expected.values()):
      want = np.array(rows)[:, [0, columns[ax.get_title()]]]
      np.testing.assert_allclose(line.get_xydata(), want)
    solid, stopped, diverged = lines
    assert solid.get_linestyle() == "-" and solid.get_marker() in ("None", "")
    assert stopped.get_linestyle() == ":"  # no BN
    assert diverged.get_linestyle() == "--" and diverged.get_marker() == "x"
    assert diverged.get_markevery() == [0]  # the x on its last point
  assert solid.get_color() == stopped.get_color()  # the same lr


def test_summary_figures_and_reference_lines_of_the_fixture():
  runs = plot.load_runs(FIXTURE_RUNS)
  fig = plot.summary_figure(runs, "test_accuracy", "test accuracy")
  lines = fig.axes[0].get_lines()
  assert [l.get_label() for l in lines] == [
      "clean", "random labels", "shuffled pixels"]
  np.testing.assert_allclose(lines[1].get_xydata(), [[1, 0.09], [2, 0.11]])
  np.testing.assert_allclose(lines[2].get_xydata(), [[1, 0.33], [2, 0.4]])
  image = plot.study_figure(studies.STUDIES["image_corruption"], runs)
  labels = [l.get_label() for l in image.axes[1].get_lines()]
  assert labels == ["shuffled pixels", "clean (reference)"]
  np.testing.assert_allclose(image.axes[1].get_lines()[1].get_xydata(),
                             [[1, 0.4], [2, 0.65]])
  assert plot.study_figure(studies.STUDIES["bn_noise"], runs) is None


def test_summary_table_has_final_and_best_numbers():
  table = plot.summary_table(plot.load_runs(FIXTURE_RUNS))
  assert ("| BN, lr=0.05 | finished | 1 | 3 | 0.9000 | 68.00 | 50.00 | "
          "52.00 (2) |" in table)
  assert ("| no BN, lr=0.5 | diverged (epoch 2) | 1 | 1 | 2.2500 | 12.00 | "
          "10.00 | 10.00 (1) |" in table)
  assert "## Random labels (`label_corruption`)" in table
  assert "bn_noise" not in table


def test_plot_cli_writes_every_figure_in_every_format(tmp_path):
  out = tmp_path / "figures"
  result = subprocess.run(
      [sys.executable, PLOT_PY, f"--runs_dir={FIXTURE_RUNS}",
       f"--out_dir={out}", "--format=png,svg"], capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 0, result.stderr
  stems = ["bn_lr", "label_corruption", "image_corruption",
           "summary_train_accuracy", "summary_test_accuracy"]
  assert sorted(os.listdir(out)) == sorted(
      [f"{s}.{f}" for s in stems for f in ("png", "svg")] + ["summary.md"])
  with open(out / "bn_lr.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  bad = subprocess.run([sys.executable, PLOT_PY, f"--runs_dir={tmp_path}/no",
                        "--format=gif"], capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stderr.count("\n") == 1


# --- hparams -----------------------------------------------------------------


def test_write_hparams_is_read_back_by_tensorboard(tmp_path):
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.plugins.hparams import metadata
  from tfcifar import hparams
  model_dir = str(tmp_path / "bn-lr0.05")
  os.makedirs(model_dir)
  written = hparams.write_hparams(model_dir, {
      "lr": 0.05, "bn": True, "epochs": np.int64(3), "vgg_stages": "vgg16",
      "corrupt": None, "shape": (1, 2)})
  assert written == {"lr": 0.05, "bn": True, "epochs": 3,
                     "vgg_stages": "vgg16", "corrupt": "None", "shape": "1,2"}
  events = event_accumulator.EventAccumulator(model_dir)
  events.Reload()
  content = events.PluginTagToContent(metadata.PLUGIN_NAME)
  experiment = metadata.parse_experiment_plugin_data(
      content[metadata.EXPERIMENT_TAG])
  assert sorted(h.name for h in experiment.hparam_infos) == sorted(written)
  metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
  assert metrics == {("test", "accuracy"), ("test", "loss"),
                     ("train", "accuracy"), ("train", "loss")}
  session = metadata.parse_session_start_info_plugin_data(
      content[metadata.SESSION_START_INFO_TAG])
  values = {k: getattr(v, v.WhichOneof("kind"))
            for k, v in session.hparams.items()}
  assert values == {"lr": 0.05, "bn": True, "epochs": 3.0,
                    "vgg_stages": "vgg16", "corrupt": "None", "shape": "1,2"}


# --- the real trainer --------------------------------------------------------


def test_smoke_sweep_with_real_trainer(tmp_path, sample_data_dir):
  """NEEDS THE REAL TRAINER: one smoke run of each study, then the figures."""
  picks = ["bn_lr/nobn-lr0.5", "bn_noise/bn-noise", "augmentation/aug",
           "label_corruption/labels-p0.5", "image_corruption/shuffled_pixels"]
  result = run_sweep("--study=all", "--smoke", f"--runs_dir={tmp_path}",
                     f"--data_dir={sample_data_dir}",
                     f"--runs={','.join(picks)}",
                     "--parallel=2", timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr
  for key in picks:
    status = read_json(tmp_path / key / "status.json")
    assert status["status"] in ("finished", "diverged"), key
    if status["status"] == "finished":
      assert metric_epochs(tmp_path / key) == [1, 2]
      assert 0 <= status["metrics"]["test_accuracy"] <= 1
  out = tmp_path / "figures"
  plot.plot_all(str(tmp_path), str(out), ("png",), log=lambda _: None)
  # flags/bn_noise.cfg logs --histograms: activations.csv per epoch and
  # layer, drawn as bn_noise_activations.png.
  layers = {r["layer"] for r in plot.load_runs(str(tmp_path))[
      "bn_noise/bn-noise"].activations}
  assert layers == {"conv1_1", "conv2_1", "fc1", "fc2"}
  assert sorted(os.listdir(out)) == sorted(
      [f"{s}.png" for s in studies.STUDIES] +
      ["bn_noise_activations.png", "summary_train_accuracy.png",
       "summary_test_accuracy.png", "summary.md"])


# --- seeds -------------------------------------------------------------------


def test_seeds_run_every_grid_point_once_per_seed_and_plot_their_mean(
    tmp_path):
  result = run_sweep("--study=augmentation,bn_noise", "--seeds=0,1,2",
                     f"--runs_dir={tmp_path}", f"--trainer={FAKE_TRAINER}",
                     "--trainer_flags=--epochs=2", "--runs=*/aug,*/bn")
  assert result.returncode == 0, result.stderr
  for key in ("augmentation/aug", "bn_noise/bn"):
    for seed in (0, 1, 2):
      model_dir = tmp_path / key / f"seed{seed}"
      assert invocations(model_dir) == ["start 0", "finished"]
      with open(f"{model_dir}.log") as f:
        command = f.readline()
      assert f"--seed={seed} --model_dir={model_dir}" in command
  assert not (tmp_path / "augmentation" / "noaug").exists()
  # The fake trainer's train loss is 2.3 / (1 + lr * epoch) + 0.01 * seed:
  # over seeds 0, 1, 2 the mean adds 0.01 and the (population) std is
  # 0.01 * sqrt(2/3).
  runs = plot.load_runs(str(tmp_path))
  aug = runs["augmentation/aug"]
  assert len(aug.seeds) == 3 and aug.state == "finished"
  epochs, losses = aug.series("train_loss")
  assert epochs == [1, 2]
  np.testing.assert_allclose(losses, [2.3 / 1.05 + 0.01, 2.3 / 1.1 + 0.01])
  np.testing.assert_allclose(aug.band("train_loss")[1],
                             [0.01 * np.sqrt(2 / 3)] * 2, rtol=1e-6)
  fig = plot.study_figure(studies.STUDIES["augmentation"], runs)
  (line,) = fig.axes[0].get_lines()
  assert line.get_label() == "crop + flip (3 seeds)"
  (band,) = fig.axes[0].collections  # the +-1 std band
  low = band.get_paths()[0].vertices[:, 1].min()
  assert low == pytest.approx(2.3 / 1.1 + 0.01 - 0.01 * np.sqrt(2 / 3))
  table = plot.summary_table(runs)
  std = f"{0.01 * np.sqrt(2 / 3):.4f}"
  assert f"| crop + flip | finished | 3 | 2 | {2.3 / 1.1 + 0.01:.4f} ± {std} |" in (
      table)
  # Restarted with more seeds: the done ones are skipped.
  again = run_sweep("--study=augmentation", "--seeds=0,1,2,3",
                    f"--runs_dir={tmp_path}", f"--trainer={FAKE_TRAINER}",
                    "--trainer_flags=--epochs=2", "--runs=*/aug")
  assert again.returncode == 0
  assert invocations(tmp_path / "augmentation/aug/seed0") == ["start 0",
                                                              "finished"]
  assert invocations(tmp_path / "augmentation/aug/seed3") == ["start 0",
                                                              "finished"]


@pytest.mark.parametrize("args, message", [
    (("--study=bn_lr", "--seeds=0,x"), "--seeds"),
    (("--study=bn_lr", "--seeds=1,1"), "repeats"),
    (("--study=bn_lr,nope",), "--study=nope"),
    (("--study=bn_lr", "--seeds=0", "--trainer_flags=--seed=3"), "--seed"),
])
def test_bad_seed_and_study_flags_are_one_line(tmp_path, args, message):
  result = run_sweep(*args, f"--runs_dir={tmp_path}", "--dry_run")
  assert result.returncode == 2
  assert result.stderr.count("\n") == 1 and message in result.stderr


def test_cpu_scale_profile_selects_every_study_and_the_p_grid(tmp_path):
  result = run_sweep("--flagfile=flags/cpu_scale.cfg", "--seeds=0",
                     f"--runs_dir={tmp_path}", "--dry_run", cwd=REPO_ROOT)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().split("\n")
  keys = [line.split(" [")[0] for line in lines[:-1]]
  assert len(keys) == 8 + 3 + 2 + 6 + 3
  assert [k for k in keys if k.startswith("label_corruption")] == [
      f"label_corruption/labels-p{p}/seed0"
      for p in ("0.0", "0.1", "0.2", "0.5", "0.8", "1.0")]
  assert all("--max_train_examples=3000" in line and "--seed=0" in line
             for line in lines[:-1])


# --- activations (--histograms) ----------------------------------------------


def test_activation_rows_by_hand():
  from tfcifar import run_dir as run_dir_lib  # pylint: disable=g-import-not-at-top
  (row,) = run_dir_lib.activation_rows(3, {"conv2_1": np.arange(101.0)})
  # 0, 1, ..., 100: the q-th percentile is q; the std of 101 consecutive
  # integers is sqrt((101^2 - 1) / 12).
  assert row["epoch"] == 3 and row["layer"] == "conv2_1"
  assert [row[f"p{q}"] for q in (1, 5, 25, 50, 75, 95, 99)] == [
      1, 5, 25, 50, 75, 95, 99]
  assert row["mean"] == 50 and row["std"] == pytest.approx(
      np.sqrt((101**2 - 1) / 12))


def test_activation_figure_draws_the_percentile_bands(tmp_path):
  from tfcifar import run_dir as run_dir_lib  # pylint: disable=g-import-not-at-top
  for run, scale in (("bn", 1.0), ("bn-noise", 3.0), ("nobn", 2.0)):
    rd = run_dir_lib.RunDir(str(tmp_path / "bn_noise" / run))
    os.makedirs(rd.path)
    rd.append_metrics({"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5,
                       "test_loss": 1.0, "test_accuracy": 0.5, "lr": 0.05,
                       "seconds": 1.0})
    for epoch in (1, 2):
      rd.append_activations(run_dir_lib.activation_rows(
          epoch, {layer: scale * epoch * np.linspace(-1, 1, 101)
                  for layer in ("conv1_1", "conv2_1", "conv5_1", "fc1")}))
  fig = plot.activations_figure(plot.load_runs(str(tmp_path)))
  titles = [ax.get_title() for ax in fig.axes]
  assert titles == ["BN: conv2_1", "BN + noise: conv2_1", "no BN: conv2_1",
                    "BN: conv5_1", "BN + noise: conv5_1", "no BN: conv5_1"]
  noisy = fig.axes[1]
  (median,) = noisy.get_lines()
  np.testing.assert_allclose(median.get_xydata(), [[1, 0], [2, 0]], atol=1e-9)
  outer = noisy.collections[0].get_paths()[0].vertices[:, 1]
  # linspace(-1, 1, 101): the 95th percentile is 0.9; x3 (noise), x epoch 2.
  assert outer.max() == pytest.approx(3.0 * 2 * 0.9)


def test_shards_split_a_sweep_into_disjoint_parts(tmp_path):
  keys = []
  for index in (1, 2, 3):
    result = run_sweep("--study=bn_lr", "--seeds=0,1", f"--shard={index}/3",
                       f"--runs_dir={tmp_path}", "--dry_run")
    assert result.returncode == 0, result.stderr
    keys.append([l.split(" [")[0] for l in result.stdout.split("\n")[:-2]])
  everything = [f"bn_lr/{r.name}/seed{s}" for s in (0, 1)
                for r in studies.STUDIES["bn_lr"].runs]
  assert keys[0] == everything[0::3] and keys[1] == everything[1::3]
  assert sorted(sum(keys, [])) == sorted(everything)  # each run exactly once
  for bad in ("0/3", "4/3", "1-3", "x/2"):
    result = run_sweep("--study=bn_lr", f"--shard={bad}",
                       f"--runs_dir={tmp_path}", "--dry_run")
    assert result.returncode == 2 and "--shard" in result.stderr
