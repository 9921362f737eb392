r"""Trains a CIFAR-10 model: `python -m tfcifar.train --model=vgglike --bn --lr=0.05`.

  tfcifar-train --model=vgglike --bn --lr=0.05 \
      --data_dir=/data/cifar10 --model_dir=runs/bn_lr0.05
  python -m tfcifar.train --flagfile=flags/augment.cfg --model_dir=runs/aug
  tensorboard --logdir=runs

Flags -> config -> `trainer.train_and_evaluate`. The flags are the fields of
`tfcifar.config.TrainConfig`. Re-running the same command with the same
--model_dir resumes from the last completed epoch. Exit codes: 0 finished,
1 failed, 2 bad flags or data, 3 diverged (NaN/inf loss).
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from tfcifar import cifar10
from tfcifar import config as config_lib  # importing tfcifar quiets TF's logs
from tfcifar import convert
from tfcifar import distribute
from tfcifar import errors
from tfcifar import run_dir as run_dir_lib
from tfcifar import trainer

config_lib.define_flags()
FLAGS = flags.FLAGS


def config_from_flags():
  """Reads the flags once and freezes them into a TrainConfig."""
  config = config_lib.from_flags(FLAGS)
  if not config.run.model_dir:
    m = config.model
    name = (f"{m.name}{'_bn' if m.bn else ''}{'_noise' if m.noise else ''}"
            f"_lr{config.optim.lr:g}")
    config = config.replace(model_dir=os.path.join("runs", name))
  return config


def resolve_data_dir(data_dir, log=print):
  """--data_dir, else the standard location if converted, else the sample."""
  if data_dir:
    return data_dir
  default = os.path.expanduser(convert.DEFAULT_DATA_DIR)
  if os.path.exists(os.path.join(default, cifar10.MANIFEST_FILENAME)):
    log(f"using the converted CIFAR-10 at {default}")
    return default
  sample = convert.sample_dataset_dir()
  log(f"no converted CIFAR-10 at {default} (see tfcifar-convert); using the "
      f"bundled sample (2,000 train / 500 test images) at {sample}")
  return sample


def main(argv):
  logging.set_verbosity(logging.WARNING)  # TF's INFO lines are noise here
  if len(argv) > 1:
    raise errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = config_from_flags()  # every rule checked: nothing written yet
  strategy = distribute.make_strategy(config.run.strategy,
                                      config.run.num_cpu_devices)
  replicas = strategy.num_replicas_in_sync
  if config.optim.batch_size % replicas:
    raise errors.UserError(f"--batch_size={config.optim.batch_size} is not "
                           f"divisible by the {replicas} replicas")
  config = config.replace(data_dir=resolve_data_dir(config.data.data_dir))
  try:
    code = trainer.train_and_evaluate(
        config, strategy, log=lambda message: print(message, flush=True))
  except (errors.UserError, OSError, KeyboardInterrupt):
    raise
  except Exception as e:  # pylint: disable=broad-except
    errors.fail(f"{type(e).__name__}: {e} (traceback in "
                f"{os.path.join(config.run.model_dir, run_dir_lib.ERROR_FILENAME)})",
                run_dir_lib.EXIT_FAILED)
  sys.exit(code)


def parse_flags(argv):
  """absl flag parsing, with a bad flag as one line and exit code 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    errors.fail(e, run_dir_lib.EXIT_USAGE)


def entry_point():
  """The `tfcifar-train` console script."""
  app.run(lambda argv: errors.run_main(main, argv), flags_parser=parse_flags)


if __name__ == "__main__":
  entry_point()
