"""CIFAR-10 input pipeline: tf.data batches, augmentation and corruptions.

  from tfcifar import data
  ds = data.make_dataset(data_dir, "train", batch_size=128, augment=True)
  steps = data.steps_per_epoch(data_dir, "train", 128)

See `input_pipeline.make_dataset` for the arguments, `augment.augment_batch`
for the augmentation and `corruptions.CORRUPTIONS` for Zhang et al.'s
corruptions. The names below are loaded on first use, so that
`from tfcifar.data import corruptions` (numpy only) loads no TensorFlow.
"""

import importlib

_EXPORTS = {
    "augment_batch": "augment", "CORRUPTIONS": "corruptions",
    "validate_corruption": "corruptions", "clear_cache": "input_pipeline",
    "make_dataset": "input_pipeline", "NORMALIZATIONS": "input_pipeline",
    "normalization_stats": "input_pipeline", "split_arrays": "input_pipeline",
    "split_size": "input_pipeline", "steps_per_epoch": "input_pipeline",
    "validate_normalization": "input_pipeline",
    "PREPROCESSES": "input_pipeline", "preprocess_stats": "input_pipeline",
    "load_stats": "input_pipeline", "save_stats": "input_pipeline",
    "validate_preprocess": "input_pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
