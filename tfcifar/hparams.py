"""The run's hyperparameters for TensorBoard's HParams dashboard.

The trainer calls `write_hparams(model_dir, hparams)` once at the start of a
run (on the chief). It writes, to `<model_dir>` itself, the experiment config
(which hyperparameters and metrics exist) and this session's values. The
metrics name the scalars the trainer writes: `loss` and `accuracy` under the
`train` and `test` run directories, so that

  tensorboard --logdir=runs/bn_lr

shows one row per run with its flags and final train/test loss and accuracy.
"""

import numbers
import os

import numpy as np

# (tag, group, display name): group is the run subdirectory of <model_dir>.
METRICS = (
    ("accuracy", "test", "test accuracy"),
    ("loss", "test", "test loss"),
    ("accuracy", "train", "train accuracy"),
    ("loss", "train", "train loss"),
)

HPARAMS_FILENAME_SUFFIX = ".hparams"


def hparam_value(value):
  """`value` as a bool, int, float or str: the types the plugin accepts."""
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, (bool, str)):
    return value
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value)


def hparam_values(hparams):
  """{name: value} with every value converted by `hparam_value`."""
  return {str(name): hparam_value(value) for name, value in hparams.items()}


def write_hparams(model_dir, hparams):
  """Writes the HParams config and this run's values to `model_dir`.

  Args:
    model_dir: the run directory (the trainer's `--model_dir`).
    hparams: {flag name: value}; values of other types than bool, int, float
      and str are converted to str.

  Returns:
    The {name: value} dict as written.
  """
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from tensorboard.plugins.hparams import api as hp
  values = hparam_values(hparams)
  metrics = [hp.Metric(tag, group=group, display_name=name)
             for tag, group, name in METRICS]
  writer = tf.summary.create_file_writer(
      model_dir, filename_suffix=HPARAMS_FILENAME_SUFFIX)
  with writer.as_default():
    hp.hparams_config(hparams=[hp.HParam(name) for name in sorted(values)],
                      metrics=metrics)
    hp.hparams(values, trial_id=os.path.basename(os.path.normpath(model_dir)))
  writer.close()
  return values
