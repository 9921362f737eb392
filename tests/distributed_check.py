"""Checks (noisy) BatchNorm in an XLA-compiled per-replica training step.

Runs the pattern the trainer uses -- a per-replica step compiled with
`tf.function(jit_compile=True)`, run by `strategy.run` under
`tf.distribute.MirroredStrategy` over logical CPU devices -- and verifies that

  * the noise of NoisyBatchNormalization changes at every step (its seed
    state advances inside the compiled step), uses the same per-channel
    moments on every replica and independent draws on each;
  * BatchNorm moving statistics, seed states and weights stay identical on
    all replicas after training steps, for plain and noisy BatchNorm.

The compiled step is *stateless* (`model.stateless_call`): it takes variable
values and returns gradients and the new non-trainable values (moving stats,
seed states), which the replica function then assigns. A stateful step (the
model reading its variables inside the XLA function) fails on logical CPU
devices with "Trying to access resource ... located in device CPU:1 from
device CPU:0" (keras-team/keras#19005), and assigning replica-mean moving
statistics needs a cross-replica sync that cannot run inside XLA.

  python tests/distributed_check.py            # exit 0 = all good
  python tests/distributed_check.py --jit_compile= --replicas=3

Must run in a fresh process: logical devices are set before TF starts.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import logging  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

CHECK_NAMES = ("noise", "train_bn", "train_noisy_bn", "loss_scale", "bf16")
REPLICAS = flags.DEFINE_integer("replicas", 2, "number of logical CPU devices")
CHECKS = flags.DEFINE_list("checks", list(CHECK_NAMES), "checks to run")
JIT = flags.DEFINE_list("jit_compile", list(CHECK_NAMES),
                        "checks whose replica step is XLA-compiled")


def make_strategy(num_replicas):
  """MirroredStrategy over `num_replicas` logical CPU devices."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_replicas)
  return tf.distribute.MirroredStrategy(
      [f"/cpu:{i}" for i in range(num_replicas)])


def stateless_forward(model, jit_compile):
  """Compiled (trainable, non_trainable, x) -> (outputs, new non_trainable)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function(jit_compile=jit_compile)
  def forward(trainable, non_trainable, x):
    return model.stateless_call(trainable, non_trainable, x, training=True)

  return forward


def make_train_step(strategy, model, optimizer, global_batch, jit_compile):
  """A distributed SGD step: the trainer's own per-replica step."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfcifar import trainer  # pylint: disable=g-import-not-at-top
  replica_step = trainer.make_replica_step(
      model, optimizer, global_batch, strategy.num_replicas_in_sync,
      jit_compile=jit_compile or None,  # not compiled: inlined (sync BN)
      mixed_precision=isinstance(optimizer, keras.optimizers.LossScaleOptimizer))

  @tf.function
  def train_step(images, labels):
    sums = strategy.run(replica_step, args=((images, labels),))
    return sums

  return train_step


def replica_values(strategy, value):
  return [np.asarray(v) for v in strategy.experimental_local_results(value)]


def check_noise(strategy, jit_compile, steps=3):
  """Noise moments shared by replicas, draws independent, new every step."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfcifar import models  # pylint: disable=g-import-not-at-top
  noise_mean, noise_std = 0.5, 1.25
  with strategy.scope():
    layer = models.NoisyBatchNormalization(noise_mean, noise_std, seed=7)
    layer.build((None, 8, 8, 16))
  forward = stateless_forward(layer, jit_compile)
  x = np.random.RandomState(0).normal(3.0, 2.0, (64, 8, 8, 16))
  x = tf.constant(x, tf.float32)

  def replica_fn():
    y, new_state = forward([v.value for v in layer.trainable_variables],
                           [v.value for v in layer.non_trainable_variables], x)
    for variable, value in zip(layer.non_trainable_variables, new_state):
      variable.assign(value)
    return y

  run = tf.function(lambda: strategy.run(replica_fn))
  failures, previous_means = [], None
  for step in range(steps):
    outputs = replica_values(strategy, run())
    means = [o.mean(axis=(0, 1, 2)) for o in outputs]
    stds = [o.std(axis=(0, 1, 2)) for o in outputs]
    if np.abs(outputs[0] - outputs[1]).max() < 0.05:
      failures.append(f"step {step}: replicas drew the same noise")
    if np.abs(means[0] - means[1]).max() > 0.1:
      failures.append(f"step {step}: replicas used different channel means")
    if np.abs(means[0]).max() > noise_mean + 0.1:
      failures.append(f"step {step}: channel mean outside +-{noise_mean}")
    # Algorithm 1 on unit-variance BN output: std^2 = E[s^2] + r_mu^2 / 3
    # with s ~ N(sigma, 0.1^2), sigma in [1, noise_std], r_mu = 0.1.
    low, high = 1.0 - 0.05, np.sqrt(noise_std**2 + 0.01 + 0.01 / 3) + 0.05
    if stds[0].min() < low or stds[0].max() > high:
      failures.append(f"step {step}: channel std outside [{low}, {high}]")
    if previous_means is not None and (
        np.abs(means[0] - previous_means).max() < 0.2):
      failures.append(f"step {step}: noise moments did not change")
    previous_means = means[0]
  states = replica_values(strategy, layer.seed_generator.state.value)
  if any(not np.array_equal(s, [7, steps]) for s in states):
    failures.append(f"seed states {states} != [7, {steps}] on every replica")
  keras.backend.clear_session()
  return failures


def check_training(strategy, jit_compile, noise, steps=3, global_batch=16):
  """Losses finite; every variable identical on all replicas after steps."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfcifar import models  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  cfg = models.ModelConfig(bn=True, noise=noise, vgg_stages="8,M,8,M",
                           dense_units=(16,), sync_bn=not jit_compile)
  with strategy.scope():
    model = models.build_model(cfg)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
  train_step = make_train_step(strategy, model, optimizer, global_batch,
                               jit_compile)
  rng = np.random.RandomState(1)
  per_replica = global_batch // strategy.num_replicas_in_sync
  failures = []
  for step in range(steps):
    images = rng.normal(size=(global_batch, 32, 32, 3)).astype("float32")
    labels = rng.randint(0, 10, global_batch)
    shard = lambda array: strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(array[  # pylint: disable=g-long-lambda
            context.replica_id_in_sync_group * per_replica:][:per_replica]))
    losses = replica_values(strategy, train_step(shard(images), shard(labels)))
    if not np.all(np.isfinite(losses)):
      failures.append(f"step {step}: loss {losses}")
  for variable in model.variables:
    copies = replica_values(strategy, variable.value)
    if any(not np.array_equal(copies[0], c) for c in copies[1:]):
      failures.append(f"{variable.path} differs between replicas")
  moving_means = [layer.moving_mean for layer in
                  models.normalization_layers(model)]
  if any(not np.any(np.asarray(m)) for m in moving_means):
    failures.append("a BatchNorm moving mean was never updated")
  keras.backend.clear_session()
  return failures


def precision_run(strategy, policy, jit_compile, batches, global_batch=16):
  """Trains a tiny model on `batches` under `policy`; returns the model,
  optimizer and the loss sums [steps, replicas]."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfcifar import models  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy(policy)
  keras.utils.set_random_seed(0)
  with strategy.scope():
    model = models.build_model(models.ModelConfig(
        vgg_stages="8,M,8,M", dense_units=(16,)))
    optimizer = keras.optimizers.SGD(0.1)
    if policy == "mixed_float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
  train_step = make_train_step(strategy, model, optimizer, global_batch,
                               jit_compile)
  per_replica = global_batch // strategy.num_replicas_in_sync
  losses = []
  for images, labels in batches:
    shard = lambda array: strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(array[  # pylint: disable=g-long-lambda
            context.replica_id_in_sync_group * per_replica:][:per_replica]))
    sums = train_step(shard(images), shard(labels))
    losses.append([s[0] for s in replica_values(strategy, sums)])
  keras.mixed_precision.set_global_policy("float32")
  return model, optimizer, np.array(losses)


def random_batches(steps, global_batch=16, seed=1):
  rng = np.random.RandomState(seed)
  return [(rng.normal(size=(global_batch, 32, 32, 3)).astype("float32"),
           rng.randint(0, 10, global_batch)) for _ in range(steps)]


def check_loss_scale(strategy, jit_compile, steps=3):
  """fp16: an inf on one replica skips the step everywhere and halves the
  scale everywhere; then `steps` steps match float32 (weights to 2e-3)."""
  import keras  # pylint: disable=g-import-not-at-top
  poisoned = random_batches(1, seed=2)
  poisoned[0][0][-1, 0, 0, 0] = np.inf  # the last replica's share only
  batches = random_batches(steps)
  model, optimizer, _ = precision_run(strategy, "mixed_float16", jit_compile,
                                      poisoned)
  failures = []
  keras.utils.set_random_seed(0)
  initial = precision_run(strategy, "float32", jit_compile, [])[0]
  for variable, start in zip(model.trainable_variables,
                             initial.trainable_variables):
    copies = replica_values(strategy, variable.value)
    if any(not np.array_equal(c, np.asarray(start)) for c in copies):
      failures.append(f"{variable.path} changed by the skipped step")
  scales = replica_values(strategy, optimizer.dynamic_scale.value)
  if any(s != optimizer.initial_scale / 2 for s in scales):
    failures.append(f"scales {scales} != {optimizer.initial_scale / 2} on "
                    "every replica")
  fp16, _, losses16 = precision_run(strategy, "mixed_float16", jit_compile,
                                    batches)
  fp32, _, losses32 = precision_run(strategy, "float32", jit_compile, batches)
  difference = max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in
                   zip(fp16.trainable_variables, fp32.trainable_variables))
  if difference > 2e-3 or not np.allclose(losses16, losses32, rtol=1e-2):
    failures.append(f"fp16 vs float32: weights differ by {difference}, "
                    f"losses {losses16.ravel()} vs {losses32.ravel()}")
  keras.backend.clear_session()
  return failures


def check_bf16(strategy, jit_compile, steps=6):
  """bf16 (no loss scaling) trains: the loss of a repeated batch falls."""
  import keras  # pylint: disable=g-import-not-at-top
  _, optimizer, losses = precision_run(
      strategy, "mixed_bfloat16", jit_compile, random_batches(1) * steps)
  keras.backend.clear_session()
  total = losses.sum(axis=1)
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or not (
      np.all(np.isfinite(total)) and total[-1] < 0.8 * total[0]):
    return [f"bf16 losses {total} do not fall"]
  return []


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # no per-variable all-reduce INFO
  strategy = make_strategy(REPLICAS.value)
  checks = {
      "noise": lambda jit: check_noise(strategy, jit),
      "train_bn": lambda jit: check_training(strategy, jit, noise=False),
      "train_noisy_bn": lambda jit: check_training(strategy, jit, noise=True),
      "loss_scale": lambda jit: check_loss_scale(strategy, jit),
      "bf16": lambda jit: check_bf16(strategy, jit),
  }
  failed = False
  for name in CHECKS.value:
    jit_compile = name in JIT.value
    start = time.time()
    failures = checks[name](jit_compile)
    print(f"{name}: {'ok' if not failures else 'FAILED'} "
          f"({strategy.num_replicas_in_sync} replicas, "
          f"jit_compile={jit_compile}, {time.time() - start:.1f} s)")
    for failure in failures:
      print(f"  {failure}")
    failed = failed or bool(failures)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main)
