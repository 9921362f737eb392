r"""Trains a CIFAR-10 model: `python -m tfcifar.train --model=vgglike --bn --lr=0.05`.

  python -m tfcifar.train --model=vgglike --bn --lr=0.05 \
      --data_dir=/data/cifar10 --model_dir=runs/bn_lr0.05
  python -m tfcifar.train --flagfile=flags/augment.cfg --model_dir=runs/aug
  tensorboard --logdir=runs

Re-running the same command with the same --model_dir resumes from the last
completed epoch. Exit codes: 0 finished, 1 failed, 2 bad flags or data,
3 diverged (NaN/inf loss).
"""

import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging

from tfcifar import config as config_lib  # importing tfcifar quiets TF's C++ logs
from tfcifar import errors
from tfcifar import run_dir as run_dir_lib

_D = config_lib.TrainConfig()  # defaults live in the config, with units
# Model.
flags.DEFINE_string("model", _D.model, "Model name (tfcifar.models.MODELS).")
flags.DEFINE_boolean("bn", _D.bn, "BatchNorm before every hidden ReLU.")
flags.DEFINE_boolean("noise", _D.noise, "Noisy BatchNorm (needs --bn), "
                     "Santurkar et al. 2018, Algorithm 1: after BN, a <- s*a "
                     "+ m with a per-step channel shift mu and scale sigma and "
                     "a per-activation jitter.")
flags.DEFINE_float("noise_mean", _D.noise_mean, "n_mu (>= 0): channel shifts "
                   "mu ~ U(-n_mu, n_mu), new every step.")
flags.DEFINE_float("noise_std", _D.noise_std, "n_sigma (>= 1): channel scales "
                   "sigma ~ U(1, n_sigma), new every step.")
flags.DEFINE_float("noise_mean_jitter", _D.noise_mean_jitter, "r_mu (>= 0): "
                   "per-activation shift m ~ U(mu - r_mu, mu + r_mu).")
flags.DEFINE_float("noise_std_jitter", _D.noise_std_jitter, "r_sigma (>= 0): "
                   "per-activation scale s ~ N(sigma, r_sigma^2).")
flags.DEFINE_float("width_multiplier", _D.width_multiplier,
                   "Scales every layer width.")
flags.DEFINE_string("vgg_stages", _D.vgg_stages, "vgg11|vgg13|vgg16|vgg19 or "
                    "a spec such as 64,64,M,128,128,M (M = max-pool).")
flags.DEFINE_float("weight_decay", _D.weight_decay,
                   "L2 on conv/dense kernels: loss += wd * sum(w**2) / 2.")
# Data.
flags.DEFINE_string("data_dir", _D.data_dir, "Converted CIFAR-10 TFRecords. "
                    "Default: the standard location if converted data is "
                    "there, else the bundled sample.")
flags.DEFINE_boolean("augment", _D.augment,
                     "Reflect-pad-4 random crop 32 and horizontal flip.")
flags.DEFINE_string("corrupt", _D.corrupt, "Dataset corruption: labels, "
                    "shuffled_pixels, random_pixels or gaussian.")
flags.DEFINE_float("corrupt_prob", _D.corrupt_prob,
                   "Probability that a train label is randomised (labels).")
flags.DEFINE_enum("preprocess", _D.preprocess,
                  ["standardize", "unit", "mean", "gcn", "zca", "gcn_zca"],
                  "Input preprocessing (tfcifar/data/preprocess.py): "
                  "standardize = per-channel train mean/std (the study); "
                  "unit = [0, 1]; mean = [0, 1] minus the mean train RGB "
                  "value; gcn = global contrast normalisation per image "
                  "(s=1, lambda=10, eps=1e-8); zca = ZCA whitening fitted on "
                  "the train split (eps=0.01 on [0, 1] values); gcn_zca = "
                  "both. Fitted statistics are cached beside the data and "
                  "recorded in <model_dir>/preprocess.npz.")
flags.DEFINE_enum("normalization", None, ["standardize", "unit"],
                  "Deprecated: --preprocess (kept so old flagfiles load).")
flags.DEFINE_boolean("autoaugment", _D.autoaugment, "AutoAugment, CIFAR-10 "
                     "policy (Cubuk et al. 2019; torchvision's "
                     "AutoAugmentPolicy.CIFAR10), after crop+flip.")
flags.DEFINE_integer("cutout", _D.cutout, "Cutout (DeVries & Taylor 2017): "
                     "zero one SIZE x SIZE square per train image (clipped "
                     "at the border), after normalisation; 0 = off.")
flags.DEFINE_integer("max_train_examples", _D.max_train_examples,
                     "Use the first N train images (0 = all).")
flags.DEFINE_integer("max_test_examples", _D.max_test_examples,
                     "Use the first N test images (0 = all).")
# Optimisation.
flags.DEFINE_enum("optimizer", _D.optimizer,
                  ["sgd", "momentum", "nesterov", "adam", "adamw"],
                  "Optimizer (the study: plain SGD). adamw decays the "
                  "weights by --weight_decay decoupled from the loss "
                  "(Loshchilov & Hutter 2019), instead of the L2 term.")
flags.DEFINE_float("lr", _D.lr, "Learning rate (the initial one with a "
                   "--lr_schedule).")
flags.DEFINE_float("momentum", _D.momentum,
                   "Momentum for --optimizer=momentum|nesterov.")
flags.DEFINE_enum("lr_schedule", _D.lr_schedule,
                  ["constant", "step", "cosine", "exponential"],
                  "Learning-rate schedule per step (tfcifar/schedules.py).")
flags.DEFINE_string("lr_decay_epochs", _D.lr_decay_epochs, "step: decay "
                    "every N epochs ('100') or at these epochs ('81,122'); "
                    "cosine: the decay length (default --epochs); "
                    "exponential: by --lr_decay_factor every N epochs "
                    "(default 1).")
flags.DEFINE_float("lr_decay_factor", _D.lr_decay_factor,
                   "Learning-rate multiplier per decay (step, exponential).")
flags.DEFINE_integer("warmup_epochs", _D.warmup_epochs, "Linear warmup over "
                     "this many epochs (Goyal et al. 2017), 0 = none.")
flags.DEFINE_integer("switch_to_sgd_epoch", _D.switch_to_sgd_epoch,
                     "With adam/adamw: from this epoch on, SGD with "
                     "--momentum and a new optimizer state (0 = never).")
flags.DEFINE_float("sgd_lr", _D.sgd_lr, "Learning rate of the SGD phase "
                   "(the --lr_schedule scaled by sgd_lr/lr); 0 = the "
                   "--lr schedule itself.")
flags.DEFINE_float("label_smoothing", _D.label_smoothing, "Targets "
                   "(1-eps)*one_hot + eps/10 (Szegedy et al. 2016, Sec. 7). "
                   "train_loss reports this smoothed loss (the one "
                   "minimised); test_loss stays plain cross-entropy.")
flags.DEFINE_float("dropout", _D.dropout, "Dropout rate of the models that "
                   "have dropout layers (vgglike has none).")
flags.DEFINE_integer("batch_size", _D.batch_size,
                     "Global batch size (images per step over all replicas).")
flags.DEFINE_integer("epochs", _D.epochs, "Epochs to train.")
flags.DEFINE_integer("seed", _D.seed, "Seed of init, data order, corruption, "
                     "augmentation and noise.")
# Execution.
flags.DEFINE_string("model_dir", _D.model_dir, "Run directory. Default: "
                    "runs/<model>[_bn][_noise]_lr<lr>.")
flags.DEFINE_enum("strategy", _D.strategy, ["default", "mirrored",
                                            "multi_worker"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_integer("num_cpu_devices", _D.num_cpu_devices, "Logical CPU "
                     "devices for --strategy=mirrored on a machine without GPU.")
flags.DEFINE_boolean("mixed_precision", _D.mixed_precision,
                     "mixed_float16 compute with dynamic loss scaling.")
flags.DEFINE_boolean("xla", _D.xla, "XLA-compile the per-replica step.")
flags.DEFINE_boolean("histograms", _D.histograms, "Log histograms of post-BN "
                     "(post-noise) activations every epoch.")
flags.DEFINE_integer("steps_per_loop", _D.steps_per_loop,
                     "Train steps per tf.function call.")
flags.DEFINE_enum("progress", _D.progress, ["auto", "bar", "log", "none"],
                  "Progress bar (auto: a bar on a terminal, else log lines).")
flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints,
                     "Checkpoints kept in <model_dir>/checkpoints.")

FLAGS = flags.FLAGS


def config_from_flags():
  """Reads the flags once and freezes them into a TrainConfig."""
  values = {name: FLAGS[name].value for name in config_lib.field_names()}
  values["corrupt"] = values["corrupt"] or None
  values["preprocess"] = _preprocess_flag()
  config = config_lib.TrainConfig(**values)
  if not config.model_dir:
    name = (f"{config.model}{'_bn' if config.bn else ''}"
            f"{'_noise' if config.noise else ''}_lr{config.lr:g}")
    config = config.replace(model_dir=os.path.join("runs", name))
  return config


def _preprocess_flag():
  """--preprocess, or the deprecated --normalization where only it is set."""
  old = FLAGS["normalization"].value
  if old is None:
    return FLAGS.preprocess
  if FLAGS["preprocess"].present and FLAGS.preprocess != old:
    raise errors.UserError(f"--normalization={old} (deprecated) contradicts "
                           f"--preprocess={FLAGS.preprocess}; keep "
                           "--preprocess only")
  return old


def flags_text(config):
  """The resolved flags, loadable with --flagfile."""
  lines = ["# Resolved flags of this run: python -m tfcifar.train "
           "--flagfile=<this file>"]
  for name, value in config.to_dict().items():
    if value is None:
      continue
    if isinstance(value, bool):
      lines.append(f"--{name}" if value else f"--no{name}")
    else:
      lines.append(f"--{name}={value}")
  return "\n".join(lines) + "\n"


def validate(config):
  """Flag errors that need no data or devices: one line each, exit 2."""
  from tfcifar import data  # pylint: disable=g-import-not-at-top
  from tfcifar import models  # pylint: disable=g-import-not-at-top
  from tfcifar import schedules  # pylint: disable=g-import-not-at-top
  checks = [
      (config.model in models.MODELS, f"--model={config.model} is not one of "
       f"{', '.join(sorted(models.MODELS))}"),
      (config.lr > 0, f"--lr must be positive, got {config.lr}"),
      (config.batch_size > 0, f"--batch_size must be positive, got "
       f"{config.batch_size}"),
      (config.epochs > 0, f"--epochs must be positive, got {config.epochs}"),
      (config.weight_decay >= 0, "--weight_decay must be >= 0"),
      (config.width_multiplier > 0, "--width_multiplier must be positive"),
      (not config.noise or config.bn, "--noise replaces BatchNorm layers with "
       "noisy ones: it needs --bn"),
      (config.noise_mean >= 0, "--noise_mean must be >= 0"),
      (config.noise_std >= 1, "--noise_std must be >= 1"),
      (min(config.noise_mean_jitter, config.noise_std_jitter) >= 0,
       "--noise_mean_jitter and --noise_std_jitter must be >= 0"),
      (config.steps_per_loop > 0, "--steps_per_loop must be positive"),
      (config.num_cpu_devices > 0, "--num_cpu_devices must be positive"),
      (min(config.max_train_examples, config.max_test_examples) >= 0,
       "--max_train_examples and --max_test_examples must be >= 0"),
      (config.lr_decay_factor > 0, "--lr_decay_factor must be positive"),
      (config.warmup_epochs >= 0, "--warmup_epochs must be >= 0"),
      (config.switch_to_sgd_epoch >= 0, "--switch_to_sgd_epoch must be >= 0"),
      (not config.switch_to_sgd_epoch or config.optimizer in ("adam", "adamw"),
       "--switch_to_sgd_epoch switches from --optimizer=adam or adamw to SGD"),
      (config.sgd_lr >= 0, "--sgd_lr must be >= 0"),
      (0 <= config.label_smoothing < 1, "--label_smoothing must be in [0, 1)"),
      (0 <= config.dropout < 1, "--dropout must be in [0, 1)"),
      (0 <= config.cutout <= 32, "--cutout must be in 0..32 pixels"),
  ]
  for ok, message in checks:
    if not ok:
      raise errors.UserError(message)
  data.validate_corruption(config.corrupt, config.corrupt_prob)
  data.validate_preprocess(config.preprocess)
  models.check_dropout(config.model_config())
  schedules.make_schedule(config.lr_schedule, config.lr, 1,
                          decay_epochs=config.lr_decay_epochs,
                          total_epochs=config.epochs)


def resolve_data_dir(data_dir, log=print):
  """--data_dir, else the standard location if converted, else the sample."""
  from tfcifar import cifar10  # pylint: disable=g-import-not-at-top
  from tfcifar import convert  # pylint: disable=g-import-not-at-top
  if data_dir:
    return data_dir
  default = os.path.expanduser(convert.DEFAULT_DATA_DIR)
  if os.path.exists(os.path.join(default, cifar10.MANIFEST_FILENAME)):
    log(f"using the converted CIFAR-10 at {default}")
    return default
  sample = convert.sample_dataset_dir()
  log(f"no converted CIFAR-10 at {default} (see tools/"
      f"download_and_convert_cifar10.py); using the bundled sample "
      f"(2,000 train / 500 test images) at {sample}")
  return sample


def _write_hparams(config):
  try:
    from tfcifar import hparams  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  hparams.write_hparams(config.model_dir, config.identity())


def run(config, strategy, log=print):
  """Trains `config`; returns the process exit code."""
  from tfcifar import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  run_dir = run_dir_lib.RunDir(config.model_dir)
  status = run_dir.read_status()
  if status.get("status") == "diverged":
    log(f"{config.model_dir} diverged in epoch {status.get('diverged_epoch')} "
        "earlier; remove it to train again")
    return run_dir_lib.EXIT_DIVERGED
  run_dir.check_same_run(config)
  trainer = trainer_lib.Trainer(config, strategy, config.data_dir, log=log)
  if trainer.chief:
    run_dir.write_config(config, flags_text(config))
    if not status:
      _write_hparams(config)
  try:
    row = trainer.train()
  except trainer_lib.Diverged as e:
    if trainer.chief:
      rows = run_dir.read_metrics()
      run_dir.write_status("diverged", e.epoch - 1, rows[-1] if rows else {},
                           diverged_epoch=e.epoch)
    log(f"diverged: the train loss is NaN/inf in epoch {e.epoch}; metrics of "
        f"earlier epochs are in {run_dir.file(run_dir_lib.METRICS_FILENAME)}")
    return run_dir_lib.EXIT_DIVERGED
  except Exception:  # an unexpected failure: keep the traceback in the run
    if trainer.chief:
      rows = run_dir.read_metrics()
      run_dir.write_status("failed", rows[-1]["epoch"] if rows else 0,
                           rows[-1] if rows else {})
      with open(run_dir.file("error.log"), "w") as f:
        f.write(traceback.format_exc())
    raise
  trainer.save_model()
  if trainer.chief:
    run_dir.write_status("finished", row.get("epoch", config.epochs), row)
  return run_dir_lib.EXIT_OK


def main(argv):
  logging.set_verbosity(logging.WARNING)  # TF's INFO lines are noise here
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = config_from_flags()
  validate(config)
  from tfcifar import distribute  # pylint: disable=g-import-not-at-top
  strategy = distribute.make_strategy(config.strategy, config.num_cpu_devices)
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise errors.UserError(f"--batch_size={config.batch_size} is not divisible "
                           f"by the {replicas} replicas")
  config = config.replace(data_dir=resolve_data_dir(config.data_dir))
  try:
    code = run(config, strategy)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, (errors.UserError, OSError)):
      raise
    errors.fail(f"{type(e).__name__}: {e} (traceback in "
                f"{os.path.join(config.model_dir, 'error.log')})",
                run_dir_lib.EXIT_FAILED)
  sys.exit(code)


def parse_flags(argv):
  """absl flag parsing, with a bad flag as one line and exit code 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    errors.fail(e, run_dir_lib.EXIT_USAGE)


def entry_point():
  app.run(lambda argv: errors.run_main(main, argv), flags_parser=parse_flags)


if __name__ == "__main__":
  entry_point()
