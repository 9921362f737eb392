"""CIFAR-10 input pipeline: tf.data batches, augmentation and corruptions.

  from tfcifar import data
  ds = data.make_dataset(data_dir, "train", batch_size=128, augment=True)
  steps = data.steps_per_epoch(data_dir, "train", 128)

See `input_pipeline.make_dataset` for the arguments, `augment.augment_batch`
for the augmentation and `corruptions.CORRUPTIONS` for Zhang et al.'s
corruptions.
"""

from tfcifar.data.augment import augment_batch
from tfcifar.data.corruptions import CORRUPTIONS
from tfcifar.data.corruptions import validate_corruption
from tfcifar.data.input_pipeline import clear_cache
from tfcifar.data.input_pipeline import make_dataset
from tfcifar.data.input_pipeline import load_stats
from tfcifar.data.input_pipeline import NORMALIZATIONS
from tfcifar.data.input_pipeline import normalization_stats
from tfcifar.data.input_pipeline import PREPROCESSES
from tfcifar.data.input_pipeline import preprocess_stats
from tfcifar.data.input_pipeline import save_stats
from tfcifar.data.input_pipeline import split_arrays
from tfcifar.data.input_pipeline import split_size
from tfcifar.data.input_pipeline import steps_per_epoch
from tfcifar.data.input_pipeline import validate_normalization
from tfcifar.data.input_pipeline import validate_preprocess

__all__ = [
    "augment_batch", "CORRUPTIONS", "validate_corruption", "clear_cache",
    "make_dataset", "NORMALIZATIONS", "normalization_stats", "split_arrays",
    "split_size", "steps_per_epoch", "validate_normalization",
    "PREPROCESSES", "preprocess_stats", "load_stats", "save_stats",
    "validate_preprocess",
]
