r"""Benchmarks training throughput: our loop (XLA on/off) against Keras `fit`.

  python -m tfcifar.benchmarks.train --data_dir=DIR --model=vgglike --bn \
      --width_multiplier=0.25 [--steps=60]

Same model, data pipeline, batch and optimizer for all four: ours with the
default --xla (auto: on with GPUs, off on CPUs), ours with XLA, ours without,
and Keras `fit`. Each is warmed up (compilation, the caching first pass of the
data) before `--steps` timed steps. Prints one line per variant; the last line
is a JSON object with the images/s and the achieved TFLOP/s of each.

TFLOP/s = images/s * train FLOPs per image, where the train FLOPs are 3x the
forward FLOPs (forward, gradient w.r.t. inputs, gradient w.r.t. weights), and
the forward FLOPs count 2 per multiply-add of every Conv2D and Dense layer
(2 * H_out * W_out * k_h * k_w * C_in * C_out, 2 * N_in * N_out), read from
the built model's layer shapes; BN, ReLU, pooling and the loss are left out.
"""

import json
import tempfile
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from tfcifar import data
from tfcifar import errors
from tfcifar import models
from tfcifar import train  # defines the training flags
from tfcifar import trainer as trainer_lib

flags.DEFINE_integer("steps", 60, "Timed train steps per variant.")
flags.DEFINE_integer("warmup_steps", 20, "Untimed steps before timing.")
FLAGS = flags.FLAGS


def time_ours(config, strategy):
  """Images/s of tfcifar's loop (strategy.run over the compiled step)."""
  return time_trainer(trainer_lib.Trainer(config, strategy))


def time_trainer(trainer):
  """Images/s of `trainer`'s compiled train loop: --warmup_steps untimed
  steps (compilation on the first call, the data's first pass), then
  --steps timed ones, --steps_per_loop per call."""
  config = trainer.config
  iterator = trainer.train_iterator(0)
  loop = trainer._train_loops[0]  # --optimizer's  # pylint: disable=protected-access
  loop(iterator, tf.constant(FLAGS.warmup_steps)).numpy()
  steps_done, start = 0, time.perf_counter()
  while steps_done < FLAGS.steps:
    n = min(config.run.steps_per_loop, FLAGS.steps - steps_done)
    loop(iterator, tf.constant(n)).numpy()
    steps_done += n
  return FLAGS.steps * config.optim.batch_size / (time.perf_counter() - start)


def time_keras_fit(config):
  """Images/s of `model.fit` on the same model, data and optimizer."""
  keras.utils.set_random_seed(config.optim.seed)
  model = models.build_model(config.model)
  model.compile(optimizer=trainer_lib.make_optimizer(config),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True), metrics=["accuracy"])
  d = config.data
  dataset = data.make_dataset(
      d.data_dir, "train", batch_size=config.optim.batch_size,
      augment=d.augment, seed=config.optim.seed, repeat=True,
      max_examples=d.max_train_examples or None)
  model.fit(dataset, steps_per_epoch=FLAGS.warmup_steps, epochs=1, verbose=0)
  start = time.perf_counter()
  model.fit(dataset, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0)
  return FLAGS.steps * config.optim.batch_size / (time.perf_counter() - start)


def forward_flops_per_image(model):
  """2 * multiply-adds of the model's Conv2D and Dense layers, one image."""
  flops = 0
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.Conv2D):
      _, height, width, _ = layer.output.shape
      flops += 2 * height * width * int(np.prod(layer.kernel.shape))
    elif isinstance(layer, keras.layers.Dense):
      flops += 2 * int(np.prod(layer.kernel.shape))
  return flops


def main(argv):
  del argv
  config = train.config_from_flags()
  config = config.replace(data_dir=train.resolve_data_dir(config.data.data_dir),
                          model_dir=tempfile.mkdtemp(prefix="bench_train_"))
  strategy = tf.distribute.get_strategy()
  default = trainer_lib.resolve_xla(config.replace(xla=None))
  results = {
      "images_per_sec": time_ours(default, strategy),
      "images_per_sec_xla": time_ours(config.replace(xla=True), strategy),
      "images_per_sec_no_xla": time_ours(config.replace(xla=False), strategy),
      "keras_fit_images_per_sec": time_keras_fit(config),
  }
  train_flops = 3 * forward_flops_per_image(models.build_model(config.model))
  for name in list(results):
    results[name.replace("images_per_sec", "tflops")] = (
        results[name] * train_flops / 1e12)
  for name, value in results.items():
    print(f"{name}: {value:.4g}")
  m = config.model
  results.update(default_xla=default.run.xla,
                 train_gflops_per_image=train_flops / 1e9)
  results.update(model=m.name, bn=m.bn, batch_size=config.optim.batch_size,
                 width_multiplier=m.width_multiplier,
                 vgg_stages=m.vgg_stages, steps=FLAGS.steps,
                 device=tf.config.list_logical_devices()[0].device_type)
  print(json.dumps({k: round(v, 1) if "per_sec" in k else
                    (float(f"{v:.4g}") if isinstance(v, float) else v)
                    for k, v in results.items()}))


def entry_point():
  app.run(lambda argv: errors.run_main(main, argv),
          flags_parser=train.parse_flags)


if __name__ == "__main__":
  entry_point()
