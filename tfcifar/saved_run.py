"""A run directory read back for analysis: its config, its model, its data.

The analysis commands (`tfcifar.evaluate`, `tfcifar.visualize`,
`tfcifar.probe`) read a run only through this module:

  config = saved_run.load_run_config(model_dir)     # the TrainConfig
  model, source, epoch = saved_run.load_model(model_dir, config)
  dataset = saved_run.dataset(config, "test")       # the run's preprocessing

`load_run_config` is the one place that knows the format of config.json, and
the functions here are the only ones that read fields of the config: when the
TrainConfig changes shape, this module is what changes.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from tfcifar import cifar10
from tfcifar import config as config_lib
from tfcifar import data
from tfcifar import run_dir as run_dir_lib
from tfcifar.errors import UserError

EVALUATION_DIRNAME = "evaluation"
MODEL_FILENAME = "model.keras"
CHECKPOINT_DIRNAME = "checkpoints"


# --- the configuration -------------------------------------------------------


def check_run_dir(model_dir):
  """UserError unless `model_dir` is a run directory (has config.json)."""
  if not model_dir:
    raise UserError("--model_dir is required (a run directory of "
                    "python -m tfcifar.train)")
  if not os.path.isdir(model_dir):
    raise UserError(f"--model_dir={model_dir} is not a directory")
  if not os.path.exists(os.path.join(model_dir, run_dir_lib.CONFIG_FILENAME)):
    raise UserError(f"--model_dir={model_dir} is not a run directory (no "
                    f"{run_dir_lib.CONFIG_FILENAME})")


def load_run_config(model_dir):
  """The TrainConfig of the run in `model_dir`, from its config.json.

  Fields the current TrainConfig does not know are ignored (a run written by
  another version); missing ones take their defaults.
  """
  check_run_dir(model_dir)
  path = os.path.join(model_dir, run_dir_lib.CONFIG_FILENAME)
  saved = cifar10.read_json_object(path, UserError)
  known = set(config_lib.flag_fields())
  try:
    return config_lib.TrainConfig.from_flat(
        **{k: v for k, v in saved.items() if k in known})
  except (TypeError, ValueError) as e:
    raise UserError(f"{path}: {e}") from None


def model_name(config):
  """The registered model name of the run ("vgglike", ...)."""
  return config.model.name


def data_dir_of(config, data_dir=None):
  """`data_dir` when given, else the run's own data directory."""
  return data_dir or config.data.data_dir


# --- the model ---------------------------------------------------------------


def latest_checkpoint(model_dir):
  return tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIRNAME))


def load_model(model_dir, config):
  """(model, source, epoch): the run's final or latest model.

  A finished run gives model.keras; an unfinished one (or one resumed for more
  epochs, whose model.keras is older) its latest checkpoint. `source` names
  the file, `epoch` the completed epochs (None when unknown).
  """
  status = run_dir_lib.RunDir(model_dir).read_status()
  keras_path = os.path.join(model_dir, MODEL_FILENAME)
  checkpoint = latest_checkpoint(model_dir)
  use_keras = os.path.exists(keras_path) and (
      status.get("status") == "finished" or checkpoint is None)
  if use_keras:
    return _load_keras(keras_path), MODEL_FILENAME, status.get("epoch")
  if checkpoint is None:
    raise UserError(f"{model_dir} has neither {MODEL_FILENAME} nor a "
                    f"checkpoint in {CHECKPOINT_DIRNAME}/ (no epoch finished "
                    "yet?)")
  model, epoch = _restore_checkpoint(checkpoint, config)
  return model, os.path.relpath(checkpoint, model_dir), epoch


def _load_keras(path):
  try:
    return keras.saving.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except  (any corrupt file)
    raise UserError(f"cannot load {path}: {type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}") from None


def build_model(config):
  """A fresh model of the run's architecture (its dtype policy included)."""
  from tfcifar import models  # pylint: disable=g-import-not-at-top
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(
      "mixed_float16" if config.run.mixed_precision else "float32")
  try:
    return models.build_model(config.model)
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _restore_checkpoint(path, config):
  """The model's weights and the epoch from the trainer's checkpoint `path`."""
  model = build_model(config)
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  try:
    status = tf.train.Checkpoint(model=model, epoch=epoch).restore(path)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise UserError(f"cannot restore {path} into the run's model: "
                    f"{str(e).splitlines()[0]}") from None
  return model, int(epoch.numpy())


# --- the data ----------------------------------------------------------------


def max_examples(config, split, limit=None):
  """Examples of `split` the analysis reads: the run's own subset, capped by
  `limit` (None or 0: no cap)."""
  run_limit = (config.data.max_train_examples if split == "train"
               else config.data.max_test_examples) or None
  limits = [n for n in (run_limit, limit) if n]
  return min(limits) if limits else None


def dataset(config, split, data_dir=None, batch_size=256, limit=None):
  """(images, labels) batches of `split` exactly as the run's evaluation sees
  them: its corruption and normalization, record order, no augmentation.

  The labels of a label-corruption run's train split are the corrupted ones
  it was trained on.
  """
  return data.make_dataset(
      data_dir_of(config, data_dir), split, batch_size=batch_size,
      augment=False, corrupt=config.data.corrupt,
      corrupt_prob=config.data.corrupt_prob, seed=config.optim.seed,
      shuffle=False, repeat=False, preprocess=config.data.preprocess,
      preprocess_stats=recorded_preprocess_stats(config),
      max_examples=max_examples(config, split, limit), drop_remainder=False)


def true_labels(config, split, data_dir=None, limit=None):
  """The clean labels of the examples `dataset(config, split, ...)` yields."""
  _, labels = data.split_arrays(data_dir_of(config, data_dir), split)
  return np.asarray(labels[:max_examples(config, split, limit)], np.int64)


def is_label_corruption(config):
  """Whether the run trained on randomly changed labels (--corrupt=labels)."""
  return config.data.corrupt == "labels"


def recorded_preprocess_stats(config):
  """The input statistics the run recorded (<model_dir>/preprocess.npz), or
  None (then the data's, as the run fitted them)."""
  path = os.path.join(config.run.model_dir or "", "preprocess.npz")
  return data.load_stats(path) if os.path.exists(path) else None


def pixel_stats(config, data_dir=None):
  """(mean[3], std[3]) in 0..255 units: pixels = inputs * std + mean (the
  per-channel affine preprocessings only: standardize, unit)."""
  preprocess = config.data.preprocess
  if preprocess == "standardize":
    mean, std = data.normalization_stats(data_dir_of(config, data_dir))
  elif preprocess == "unit":
    mean, std = (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)
  else:
    raise UserError(f"--preprocess={preprocess} is not a per-channel affine "
                    "map: its inputs cannot be turned back into pixels")
  return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def class_names(config, data_dir=None):
  """Class names from the data's labels.txt, else CIFAR-10's."""
  try:
    names = cifar10.read_labels_file(data_dir_of(config, data_dir))
    return tuple(names[i] for i in range(len(names)))
  except (OSError, ValueError, KeyError):
    return cifar10.CLASS_NAMES


def predict(model, batches):
  """(logits [N, K] float32, labels [N] int64) of the model over `batches`."""
  logits, labels = [], []
  for images, batch_labels in batches:  # Keras compiles its predict step once
    logits.append(np.asarray(model.predict_on_batch(images), np.float32))
    labels.append(batch_labels.numpy())
  return np.concatenate(logits), np.concatenate(labels).astype(np.int64)


def split_arrays(config, split, data_dir=None, limit=None, batch_size=256):
  """(inputs float32 [N, 32, 32, 3], labels int64 [N]) numpy: `dataset(...)`
  in one piece (the network's inputs, after normalization)."""
  images, labels = [], []
  for batch_images, batch_labels in dataset(config, split, data_dir,
                                            batch_size, limit):
    images.append(batch_images.numpy())
    labels.append(batch_labels.numpy())
  return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def batches(images, labels, batch_size=256):
  """A dataset of (images, labels) batches of numpy arrays, in order."""
  return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)


def evaluation_dir(model_dir, *parts):
  """RUN/evaluation[/parts...], created."""
  path = os.path.join(model_dir, EVALUATION_DIRNAME, *parts)
  os.makedirs(path, exist_ok=True)
  return path
