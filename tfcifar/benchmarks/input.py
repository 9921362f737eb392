"""Throughput of the input pipeline against a naive tutorial pipeline.

  python -m tfcifar.benchmarks.input --data_dir=DIR [--augment] [--batch_size=128]
      [--cutout=16] [--autoaugment] [--preprocess=standardize] [--nonaive]

Measures, in one process:
  decode_sec             reading, checking and decoding both splits (cached)
  first_epoch_sec        the first train epoch (builds the pipeline)
  images_per_sec         train pipeline after the caching epoch (shuffle,
                         augmentation per --augment, --autoaugment and
                         --cutout, --preprocess)
  naive_images_per_sec   the tutorial pipeline: TFRecordDataset -> shuffle ->
                         per-image map(parse, decode, pad, crop, flip,
                         normalize) -> batch -> prefetch
  eval_images_per_sec    test pipeline (record order, normalization)
  eval_pass_sec          one evaluation pass over the test split, creating its
                         iterator as the trainer does (median)

Batches are consumed by a Python loop, as a training loop would. The last line
is a JSON object with the figures.
"""

import json
import os
import time

from absl import app
from absl import flags
import tensorflow as tf

from tfcifar import cifar10
from tfcifar import data
from tfcifar import errors
from tfcifar.config import expand_path

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Converted CIFAR-10 directory.")
flags.DEFINE_bool("augment", True, "Random crop and flip in the train "
                  "pipelines (the naive one always augments).")
flags.DEFINE_integer("batch_size", 128, "Batch size of every pipeline.")
flags.DEFINE_integer("epochs", 3, "Timed train epochs after the first.")
flags.DEFINE_integer("eval_epochs", 5, "Timed test epochs after the first.")
flags.DEFINE_integer("naive_batches", 300, "Timed batches of the naive "
                     "pipeline (after --naive_warmup).")
flags.DEFINE_integer("naive_warmup", 100, "Untimed naive batches (fills the "
                     "shuffle buffer).")
flags.DEFINE_integer("seed", 0, "Seed of every pipeline.")
flags.DEFINE_integer("cutout", 0, "Cutout square side in the train pipeline "
                     "(0 = off).")
flags.DEFINE_bool("autoaugment", False, "AutoAugment (CIFAR-10 policy) in "
                  "the train pipeline.")
flags.DEFINE_string("preprocess", "standardize", "Preprocessing of every "
                    "pipeline (fitted statistics are cached beside the data).")
flags.DEFINE_bool("naive", True, "Also time the naive pipeline.")


def consume(dataset, max_batches=None):
  """(images, seconds) to iterate `dataset` in Python."""
  images = 0
  start = time.perf_counter()
  for step, (_, labels) in enumerate(dataset):
    images += int(labels.shape[0])
    if max_batches is not None and step + 1 >= max_batches:
      break
  return images, time.perf_counter() - start


def naive_dataset(data_dir, batch_size, seed):
  """The per-image pipeline a tutorial would write."""
  files = cifar10.find_record_files(data_dir, "train")
  mean, std = data.normalization_stats(data_dir)

  def parse(serialized):
    features = tf.io.parse_single_example(serialized, cifar10.feature_spec())
    image = tf.io.decode_png(features["image/encoded"], channels=3)
    image = tf.pad(image, [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
    image = tf.image.random_crop(image, cifar10.IMAGE_SHAPE)
    image = tf.image.random_flip_left_right(image)
    image = (tf.cast(image, tf.float32) - mean) / std
    return image, tf.cast(features["image/class/label"], tf.int32)

  dataset = tf.data.TFRecordDataset(files).shuffle(10000, seed=seed).repeat()
  dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size, drop_remainder=True).prefetch(
      tf.data.AUTOTUNE)


def time_train(data_dir, batch_size, augment, seed, epochs, **techniques):
  """(first epoch seconds, images/s of `epochs` further epochs).

  One repeating dataset, as the trainer iterates it.
  """
  steps = data.steps_per_epoch(data_dir, "train", batch_size)
  batches = iter(data.make_dataset(data_dir, "train", batch_size,
                                   augment=augment, seed=seed, repeat=True,
                                   **techniques))
  _, first = consume(batches, steps)
  images, seconds = consume(batches, steps * epochs)
  return first, images / seconds


def time_eval(data_dir, batch_size, epochs, preprocess="standardize"):
  """(images/s of the test pipeline, seconds of one whole evaluation pass).

  The rate is over `epochs` passes of one repeating iterator, like the train
  figure; a pass of the trainer's evaluation also creates an iterator (a fixed
  cost of some tens of ms), which the pass time includes.
  """
  size = data.split_size(data_dir, "test")
  steps = data.steps_per_epoch(data_dir, "test", batch_size)
  batches = iter(data.make_dataset(data_dir, "test", batch_size,
                                   shuffle=False, repeat=True,
                                   preprocess=preprocess))
  consume(batches, steps)
  images, seconds = consume(batches, steps * epochs)
  assert images == size * epochs
  dataset = data.make_dataset(data_dir, "test", batch_size, shuffle=False,
                              preprocess=preprocess)
  consume(dataset)
  passes = [consume(dataset)[1] for _ in range(epochs)]
  return images / seconds, sorted(passes)[len(passes) // 2]


def main(argv):
  del argv
  if not FLAGS.data_dir:
    raise errors.UserError("--data_dir is required")
  d, b, seed = expand_path(FLAGS.data_dir), FLAGS.batch_size, FLAGS.seed
  start = time.perf_counter()
  train_size = data.split_size(d, "train")  # checks, decodes and caches
  data.split_size(d, "test")
  decode = time.perf_counter() - start
  data.validate_preprocess(FLAGS.preprocess)
  data.preprocess_stats(d, FLAGS.preprocess)  # fitted (or read) once
  first, train_rate = time_train(
      d, b, FLAGS.augment, seed, FLAGS.epochs, cutout=FLAGS.cutout,
      autoaugment=FLAGS.autoaugment, preprocess=FLAGS.preprocess)
  eval_rate, eval_pass = time_eval(d, b, FLAGS.eval_epochs, FLAGS.preprocess)
  naive_rate = float("nan")
  if FLAGS.naive:
    naive = iter(naive_dataset(d, b, seed))
    consume(naive, FLAGS.naive_warmup)
    images, seconds = consume(naive, FLAGS.naive_batches)
    naive_rate = images / seconds
  result = {
      "images_per_sec": round(train_rate),
      "naive_images_per_sec": (round(naive_rate) if FLAGS.naive else None),
      "speedup_vs_naive": (round(train_rate / naive_rate, 2) if FLAGS.naive
                           else None),
      "eval_images_per_sec": round(eval_rate),
      "eval_pass_sec": round(eval_pass, 3),
      "decode_sec": round(decode, 2),
      "first_epoch_sec": round(first, 2),
      "train_examples": train_size,
      "batch_size": b,
      "augment": FLAGS.augment,
      "cutout": FLAGS.cutout,
      "autoaugment": FLAGS.autoaugment,
      "preprocess": FLAGS.preprocess,
      "cpus": os.cpu_count(),
      "load_average": [round(x, 2) for x in os.getloadavg()],
  }
  print(f"decode + check : {decode:10.1f} s (both splits, once per process)")
  print(f"train pipeline : {train_rate:10,.0f} images/s (after the first "
        f"epoch, {first:.1f} s)")
  print(f"naive pipeline : {naive_rate:10,.0f} images/s "
        f"(x{train_rate / naive_rate:.1f})")
  print(f"eval pipeline  : {eval_rate:10,.0f} images/s (one whole test pass "
        f"with a new iterator: {eval_pass * 1e3:.0f} ms)")
  print(json.dumps(result))


def entry_point():
  app.run(lambda argv: errors.run_main(main, argv))


if __name__ == "__main__":
  entry_point()
