"""The config: one frozen nested TrainConfig whose fields are the flags."""

import dataclasses
import os
import subprocess
import sys

from absl import flags
import pytest

from tfcifar import config as config_lib
from tfcifar import models
from tfcifar.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The user's contract: every flag of `python -m tfcifar.train`, in the order
# of config.json and flags.txt; the second set may change on resume.
FLAG_NAMES = (
    "model bn bn_momentum noise noise_mean noise_std noise_mean_jitter "
    "noise_std_jitter width_multiplier vgg_stages sync_bn weight_decay dropout "
    "aux_heads resnet_depth stochastic_depth bagnet_patch mlp_units data_dir "
    "augment corrupt corrupt_prob preprocess normalization autoaugment cutout "
    "max_train_examples max_test_examples optimizer lr momentum lr_schedule "
    "lr_decay_epochs lr_decay_factor warmup_epochs switch_to_sgd_epoch sgd_lr "
    "label_smoothing batch_size epochs seed model_dir "
    "strategy num_cpu_devices precision mixed_precision xla histograms "
    "steps_per_loop progress keep_checkpoints").split()
RUNTIME = {"epochs", "normalization", "data_dir", "model_dir", "strategy", "num_cpu_devices",
           "xla", "histograms", "steps_per_loop", "progress",
           "keep_checkpoints"}


def parse(*args):
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values)
  flag_values(["train", *args])
  return config_lib.from_flags(flag_values)


def test_each_field_is_one_flag_with_its_help():
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values)
  assert sorted(flag_values) == sorted(FLAG_NAMES)
  assert list(config_lib.TrainConfig.from_flat().to_dict()) == FLAG_NAMES
  assert "n_sigma" in flag_values["noise_std"].help
  assert flag_values["histograms"].default is False
  assert set(config_lib.TrainConfig.from_flat().identity()) == (
      set(FLAG_NAMES) - RUNTIME)


def test_flags_text_round_trips_through_flagfile(tmp_path):
  config = config_lib.TrainConfig.from_flat(
      bn=True, noise=True, noise_std=1.5, lr=0.1, corrupt="labels",
      corrupt_prob=0.25, xla=False, histograms=True, vgg_stages="8,M,16,M",
      model_dir="runs/x")
  path = tmp_path / "flags.txt"
  path.write_text(config.flags_text())
  assert parse(f"--flagfile={path}") == config
  assert parse(f"--flagfile={path}", "--lr=0.5").optim.lr == 0.5


def test_precision_alias_sync_bn_and_auto_xla_flags():
  default = parse()
  assert (default.run.precision, default.model.sync_bn, default.run.xla) == (
      "float32", True, None)  # None: auto, resolved by the trainer
  assert parse("--xla").run.xla is True and parse("--noxla").run.xla is False
  assert parse("--nosync_bn").model.sync_bn is False
  alias = parse("--mixed_precision")
  assert (alias.run.precision, alias.run.mixed_precision) == (
      "mixed_float16", False)
  assert alias == parse("--precision=mixed_float16")
  with pytest.raises(UserError, match="--mixed_precision means"):
    parse("--mixed_precision", "--precision=mixed_bfloat16")
  with pytest.raises(UserError, match="--precision=fp8 is not one of"):
    parse("--precision=fp8")


def test_sections_are_nested_and_frozen():
  config = parse("--bn", "--lr=0.1", "--augment", "--noxla")
  assert (config.model.bn, config.optim.lr, config.data.augment,
          config.run.xla) == (True, 0.1, True, False)
  assert isinstance(config.model, models.ModelConfig)
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.optim.lr = 1.0
  with pytest.raises(UserError, match="unknown config fields: nope"):
    config.replace(nope=1)


@pytest.mark.parametrize("overrides, message", [
    (dict(lr=0.0), "--lr must be > 0"),
    (dict(lr=float("nan")), "--lr must be > 0"),
    (dict(batch_size=0), "--batch_size must be > 0"),
    (dict(epochs=-1), "--epochs must be > 0"),
    (dict(keep_checkpoints=0), "--keep_checkpoints must be > 0"),
    (dict(steps_per_loop=0), "--steps_per_loop"),
    (dict(num_cpu_devices=0), "--num_cpu_devices"),
    (dict(max_test_examples=-5), "--max_test_examples must be >= 0"),
    (dict(momentum=-0.5), "--momentum must be >= 0"),
    (dict(optimizer="rmsprop"), "--optimizer=rmsprop is not one of sgd"),
    (dict(progress="loud"), "--progress=loud"),
    (dict(model="resnet9000"), "--model=resnet9000 is not one of .*vgglike"),
    (dict(corrupt="blur"), "--corrupt"),
    (dict(corrupt_prob=0.5), "--corrupt_prob=0.5 needs --corrupt=labels"),
    (dict(bn=True, noise=True, noise_std=0.9), "--noise_std must be >= 1"),
    (dict(preprocess="whiten"), "--preprocess=whiten is not one of"),
    (dict(normalization="unit", preprocess="zca"), "--normalization=unit"),
    (dict(cutout=33), "--cutout must be <= 32"),
    (dict(cutout=-1), "--cutout must be >= 0"),
    (dict(lr_schedule="linear"), "--lr_schedule=linear is not one of"),
    (dict(lr_schedule="step"), "--lr_schedule=step needs --lr_decay_epochs"),
    (dict(lr_decay_epochs="10"), "--lr_decay_epochs needs --lr_schedule"),
    (dict(lr_schedule="step", lr_decay_epochs="9,3"), "must be increasing"),
    (dict(lr_decay_factor=0.0), "--lr_decay_factor must be > 0"),
    (dict(warmup_epochs=-1), "--warmup_epochs must be >= 0"),
    (dict(switch_to_sgd_epoch=3), "--switch_to_sgd_epoch switches from"),
    (dict(optimizer="adam", switch_to_sgd_epoch=-1), "--switch_to_sgd_epoch"),
    (dict(sgd_lr=-0.1), "--sgd_lr must be >= 0"),
    (dict(label_smoothing=1.0), "--label_smoothing must be < 1"),
    (dict(label_smoothing=-0.1), "--label_smoothing must be >= 0"),
])
def test_each_rule_is_checked_in_the_config(overrides, message):
  with pytest.raises(UserError, match=message):
    config_lib.TrainConfig.from_flat(**overrides)


def test_import_tfcifar_loads_no_tensorflow():
  code = ("import sys, tfcifar, tfcifar.config, tfcifar.run_dir, "
          "tfcifar.errors; from tfcifar.data import corruptions; "
          "bad = {'tensorflow', 'keras'} & set(sys.modules); "
          "assert not bad, bad")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overrides, flag", [
    (dict(noise=True), "--noise needs --bn"),
    (dict(bn=True, noise_std=0.5), "--noise_std"),
    (dict(noise_mean=-1.0), "--noise_mean"),
    (dict(width_multiplier=0.0), "--width_multiplier"),
    (dict(weight_decay=-1e-4), "--weight_decay"),
])
def test_bad_config_is_a_user_error_naming_the_flag(overrides, flag):
  with pytest.raises(UserError, match=flag):
    models.ModelConfig(**overrides)


def test_config_is_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    models.ModelConfig().bn = True


def test_issue13_fields_and_aliases():
  from tfcifar.data import preprocess  # pylint: disable=g-import-not-at-top
  assert config_lib.PREPROCESSES == tuple(preprocess.PREPROCESSORS)
  # --normalization (deprecated) folds into --preprocess.
  old = config_lib.TrainConfig.from_flat(normalization="unit")
  assert (old.data.preprocess, old.data.normalization) == ("unit", None)
  assert old == config_lib.TrainConfig.from_flat(preprocess="unit")
  # A cosine schedule over --epochs makes --epochs part of the run.
  default = config_lib.TrainConfig.from_flat()
  assert "epochs" not in default.identity()
  cosine = default.replace(lr_schedule="cosine")
  assert cosine.identity()["epochs"] == 50
  assert "epochs" not in cosine.replace(lr_decay_epochs="30").identity()
  # The zoo's one --dropout: its default does not stop vgglike.
  assert default.model.name == "vgglike" and default.model.dropout == 0.5
  assert default.replace(dropout=0.9).model.dropout == 0.9
