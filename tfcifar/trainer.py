"""The training loop: `strategy.run` over an XLA-compiled per-replica step.

Keras 3 `model.fit` turns XLA off under any tf.distribute strategy and breaks
under MultiWorkerMirroredStrategy, so the loop is ours:

  train_loop (tf.function)                       runs `steps_per_loop` steps
    strategy.run(replica_step)                   one step on every replica
      compute_gradients (tf.function, jit_compile=--xla)
                                                 forward, loss, weight decay,
                                                 gradients, metric sums
      optimizer.apply_gradients                  all-reduce (sum) + update,
                                                 outside the compiled function
    strategy.reduce(SUM)                         metric sums over replicas

Metrics are the study's: train loss (cross-entropy, without the weight-decay
term; with --label_smoothing the smoothed cross-entropy that is minimised)
and accuracy summed over every batch of the epoch and averaged at its end;
test loss (plain cross-entropy), accuracy and top-5 accuracy on the whole
test split after each epoch. `lr` is the learning rate of the epoch's last
step; TensorBoard gets it per step (`learning_rate_per_step`).

With --switch_to_sgd_epoch=K the epochs from K on run a second optimizer
(SGD, a fresh state, its step counter starting at the global step so the lr
schedule continues), checkpointed beside the first.
"""

import math
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfcifar import data
from tfcifar import distribute
from tfcifar import models
from tfcifar import run_dir as run_dir_lib
from tfcifar import schedules
from tfcifar import summaries
from tfcifar.errors import UserError

# name -> (config, learning rate or schedule) -> optimizer.
OPTIMIZERS = {
    "sgd": lambda c, lr: keras.optimizers.SGD(lr),
    "momentum": lambda c, lr: keras.optimizers.SGD(lr, momentum=c.momentum),
    "nesterov": lambda c, lr: keras.optimizers.SGD(lr, momentum=c.momentum,
                                                   nesterov=True),
    "adam": lambda c, lr: keras.optimizers.Adam(lr),
    # Decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2, line
    # 12): w -= lr * wd * w, on the kernels (see `make_optimizer`).
    "adamw": lambda c, lr: keras.optimizers.AdamW(lr,
                                                  weight_decay=c.weight_decay),
}
PREPROCESS_FILENAME = "preprocess.npz"  # the run's fitted input statistics


class Diverged(Exception):
  """The train loss became NaN or infinite during `epoch`."""

  def __init__(self, epoch):
    super().__init__(f"loss is not finite in epoch {epoch}")
    self.epoch = epoch


def make_optimizer(config, learning_rate=None, name=None, model=None):
  """The optimizer `name` (default --optimizer) at `learning_rate` (a float
  or a schedule; default --lr); AdamW skips biases and BatchNorm."""
  name = name or config.optimizer
  optimizer = OPTIMIZERS[name](
      config, config.lr if learning_rate is None else learning_rate)
  if name == "adamw" and model is not None:
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
  if config.mixed_precision:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def smoothed_cross_entropy(labels, logits, label_smoothing):
  """Per-example cross-entropy with targets (1-eps) one_hot + eps/K
  (Szegedy et al. 2016, Sec. 7); eps = 0 is plain sparse cross-entropy."""
  if not label_smoothing:
    return keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)
  one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
  return keras.losses.categorical_crossentropy(
      one_hot, logits, from_logits=True, label_smoothing=label_smoothing)


def _metric_sums(labels, logits, label_smoothing=0.0):
  """[sum of per-example cross-entropy, number correct, number of examples]."""
  labels = tf.cast(labels, tf.int32)
  logits = tf.cast(logits, tf.float32)
  losses = smoothed_cross_entropy(labels, logits, label_smoothing)
  correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                             labels), tf.float32)
  count = tf.cast(tf.shape(labels)[0], tf.float32)
  return losses, tf.stack([tf.reduce_sum(losses), tf.reduce_sum(correct),
                           count])


def make_replica_step(model, optimizer, global_batch, num_replicas,
                      jit_compile=True, mixed_precision=False,
                      label_smoothing=0.0):
  """The per-replica train step: `replica_step((images, labels)) -> sums`.

  Its core (forward, loss with weight decay, gradients) is compiled with
  `jit_compile` and stateless: it takes the variables' values and returns the
  new non-trainable values (BatchNorm moving statistics, noise seed states)
  instead of assigning them, so the compiled function touches no resource of
  another replica's device and needs no cross-replica sync inside XLA. The
  replica step then assigns those values (BatchNorm moving statistics are
  averaged over replicas) and applies the gradients; the optimizer sums them
  over replicas (all-reduce) outside the compiled function.

  Returns [sum of cross-entropy, number correct, number of examples] of the
  replica's batch.
  """

  @tf.function(jit_compile=jit_compile)
  def gradients(trainable, non_trainable, images, labels):
    with tf.GradientTape() as tape:
      tape.watch(trainable)
      logits, new_non_trainable = model.stateless_call(
          trainable, non_trainable, images, training=True)
      losses, sums = _metric_sums(labels, logits, label_smoothing)
      loss = tf.reduce_sum(losses) / global_batch
      # Weight decay once per replica: gradients are summed over replicas.
      loss += models.weight_decay_loss(model, trainable) / num_replicas
      if mixed_precision:
        loss = optimizer.scale_loss(loss)
    return tape.gradient(loss, trainable), new_non_trainable, sums

  def replica_step(batch):
    images, labels = batch
    grads, new_non_trainable, sums = gradients(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], images, labels)
    for variable, value in zip(model.non_trainable_variables,
                               new_non_trainable):
      variable.assign(value)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return sums

  return replica_step


class Trainer:
  """Builds the model, optimizer and data of one run and trains it."""

  def __init__(self, config, strategy, data_dir, log=print):
    self.config = config
    self.strategy = strategy
    self.data_dir = data_dir
    self.log = log
    self.chief = distribute.is_chief(strategy)
    self.run_dir = run_dir_lib.RunDir(config.model_dir)
    num_train = data.split_size(data_dir, "train",
                                config.max_train_examples or None)
    self.steps_per_epoch = num_train // config.batch_size
    if self.steps_per_epoch < 1:
      raise UserError(f"--batch_size={config.batch_size} is larger than the "
                      f"{num_train} train examples")
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.mixed_precision else "float32")
    self.schedule = schedules.make_schedule(
        config.lr_schedule, config.lr, self.steps_per_epoch,
        decay_epochs=config.lr_decay_epochs,
        decay_factor=config.lr_decay_factor,
        warmup_epochs=config.warmup_epochs, total_epochs=config.epochs)
    with strategy.scope():
      keras.utils.set_random_seed(config.seed)
      self.model = models.build_model(config.model_config())
      self.optimizer = make_optimizer(config, self.schedule, model=self.model)
      self.optimizer.build(self.model.trainable_variables)
      self.sgd_optimizer = None
      if config.switch_to_sgd_epoch:
        self.sgd_schedule = schedules.scaled(
            self.schedule, (config.sgd_lr or config.lr) / config.lr)
        self.sgd_optimizer = make_optimizer(config, self.sgd_schedule,
                                            "momentum")
        self.sgd_optimizer.build(self.model.trainable_variables)
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                               name="completed_epochs")
    # Keras does not track SeedGenerator states as checkpoint dependencies;
    # name them, so the noise of a resumed run continues where it stopped.
    # (A list: tracked by position, which the model's structure fixes.)
    rng_states = [v for v in self.model.non_trainable_variables
                  if "seed_generator" in v.path]
    extra = {"sgd_optimizer": self.sgd_optimizer} if self.sgd_optimizer else {}
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, epoch=self.epoch,
        rng_states=rng_states, **extra)
    self.logger = (summaries.Logger(config.model_dir) if self.chief
                   else summaries.NullLogger())
    self._train_loops = [  # [0]: --optimizer; [1]: SGD after the switch
        self._make_train_loop(make_replica_step(
            self.model, optimizer, config.batch_size,
            strategy.num_replicas_in_sync, config.xla, config.mixed_precision,
            config.label_smoothing))
        for optimizer in (self.optimizer, self.sgd_optimizer) if optimizer]
    self._train_loop = self._train_loops[0]
    self._compiled_eval = tf.function(self._eval_sums, jit_compile=config.xla)
    self._test_dataset = None
    self.preprocess_stats = self._preprocess_stats()

  # --- steps --------------------------------------------------------------

  def _make_train_loop(self, replica_step):
    @tf.function
    def train_loop(iterator, num_steps):
      totals = tf.zeros([3], tf.float32)
      for _ in tf.range(num_steps):
        sums = self.strategy.run(replica_step, args=(next(iterator),))
        totals += self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums,
                                       axis=None)
      return totals
    return train_loop

  def _eval_sums(self, images, labels):
    """[loss sum, correct, count, top-5 correct] of a test batch."""
    logits = self.model(images, training=False)
    top5 = tf.math.in_top_k(tf.cast(labels, tf.int32),
                            tf.cast(logits, tf.float32), 5)
    return tf.concat([_metric_sums(labels, logits)[1],
                      [tf.reduce_sum(tf.cast(top5, tf.float32))]], 0)

  def optimizer_of(self, epoch):
    """The optimizer of `epoch` (1-based): SGD from --switch_to_sgd_epoch."""
    k = self.config.switch_to_sgd_epoch
    return self.sgd_optimizer if k and epoch >= k else self.optimizer

  def schedule_of(self, epoch):
    return (self.sgd_schedule if self.optimizer_of(epoch) is self.sgd_optimizer
            else self.schedule)

  # --- data ---------------------------------------------------------------

  def _dataset(self, split, **overrides):
    c = self.config
    kwargs = dict(batch_size=c.batch_size, augment=c.augment,
                  corrupt=c.corrupt, corrupt_prob=c.corrupt_prob, seed=c.seed,
                  preprocess=c.preprocess, autoaugment=c.autoaugment,
                  cutout=c.cutout, preprocess_stats=self.preprocess_stats,
                  max_examples=(c.max_train_examples if split == "train"
                                else c.max_test_examples) or None)
    kwargs.update(overrides)
    return data.make_dataset(self.data_dir, split, **kwargs)

  def _train_iterator(self, first_epoch_index):
    def dataset_fn(input_context):
      return self._dataset("train", shuffle=True, repeat=True,
                           epoch=first_epoch_index,
                           input_context=input_context)
    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  def evaluate(self):
    """(loss, accuracy, top-5 accuracy) on the whole test split, computed on
    this worker."""
    if self._test_dataset is None:
      self._test_dataset = self._dataset("test", shuffle=False, repeat=False)
    totals = np.zeros(4)
    for images, labels in self._test_dataset:
      totals += self._compiled_eval(images, labels).numpy()
    return totals[0] / totals[2], totals[1] / totals[2], totals[3] / totals[2]

  def _preprocess_stats(self):
    """The run's input statistics: recorded in model_dir (a resumed run and
    its evaluation reuse them), else the data's (then recorded)."""
    path = os.path.join(self.config.model_dir, PREPROCESS_FILENAME)
    if os.path.exists(path):
      return data.load_stats(path)
    stats = data.preprocess_stats(self.data_dir, self.config.preprocess)
    if self.chief and stats:
      os.makedirs(self.config.model_dir, exist_ok=True)
      data.save_stats(path, stats)
    return stats

  # --- checkpoints --------------------------------------------------------

  def _checkpoint_dir(self):
    if self.chief:
      return os.path.join(self.config.model_dir, "checkpoints")
    _, task_id = distribute.task_info(self.strategy)
    return os.path.join(self.config.model_dir, f".worker{task_id}_checkpoints")

  def restore(self):
    """Restores the latest checkpoint; returns the number of completed epochs."""
    latest = tf.train.latest_checkpoint(
        os.path.join(self.config.model_dir, "checkpoints"))
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    self._manager = tf.train.CheckpointManager(
        self.checkpoint, self._checkpoint_dir(),
        max_to_keep=self.config.keep_checkpoints)
    return int(self.epoch.numpy())

  def _save_checkpoint(self, epoch):
    self.epoch.assign(epoch)
    self._manager.save(checkpoint_number=epoch)
    if not self.chief:  # every worker saves (collectives); only the chief keeps
      shutil.rmtree(self._checkpoint_dir(), ignore_errors=True)

  # --- logging ------------------------------------------------------------

  def _log_input_images(self):
    batch = next(iter(self._dataset("train", shuffle=True, repeat=False,
                                    epoch=0, normalize=False)))
    self.logger.image_grid("train_images", batch[0].numpy())

  def _log_histograms(self, epoch):
    """Post-BN (post-noise) activations in training mode on a fixed batch.

    Computed with `stateless_call`, so the moving statistics and noise seeds
    of the model are left as they are: logging does not change training.
    """
    if not hasattr(self, "_activation_model"):
      self._activation_model = models.post_bn_activations_model(self.model)
      self._histogram_batch = next(iter(self._dataset(
          "train", shuffle=False, repeat=False, augment=False)))[0]
    probe = self._activation_model
    outputs, _ = probe.stateless_call(
        [v.value for v in probe.trainable_variables],
        [v.value for v in probe.non_trainable_variables],
        self._histogram_batch, training=True)
    self.logger.histograms(epoch, outputs)
    self.run_dir.append_activations(run_dir_lib.activation_rows(
        epoch, {name: value.numpy() for name, value in outputs.items()}))

  def _progress(self, epoch):
    mode = self.config.progress
    if mode == "auto":
      mode = "bar" if sys.stdout.isatty() else "log"
    if mode == "bar" and self.chief:
      bar = keras.utils.Progbar(self.steps_per_epoch,
                                stateful_metrics=["loss", "accuracy"])
      return lambda step, totals: bar.update(
          step, [("loss", totals[0] / totals[2]),
                 ("accuracy", totals[1] / totals[2])])
    return lambda step, totals: None

  # --- the loop -----------------------------------------------------------

  def _train_epoch(self, epoch, iterator):
    progress = self._progress(epoch)
    optimizer = self.optimizer_of(epoch)
    if optimizer is self.sgd_optimizer and int(optimizer.iterations) == 0:
      # A fresh SGD state; its steps count on from the global step.
      optimizer.iterations.assign((epoch - 1) * self.steps_per_epoch)
    train_loop = self._train_loops[optimizer is self.sgd_optimizer]
    totals = np.zeros(3)
    step = 0
    while step < self.steps_per_epoch:
      num_steps = min(self.config.steps_per_loop, self.steps_per_epoch - step)
      totals += train_loop(iterator, tf.constant(num_steps)).numpy()
      step += num_steps
      if not math.isfinite(totals[0]):
        raise Diverged(epoch)
      progress(step, totals)
    return totals[0] / totals[2], totals[1] / totals[2], totals[2]

  def train(self):
    """Trains from the last checkpoint to `epochs`; returns the last row."""
    c = self.config
    done = self.restore()
    if self.chief:
      self.run_dir.truncate_metrics(done)
    if done >= c.epochs:
      self.log(f"{c.model_dir}: already trained for {done} epochs")
      return (self.run_dir.read_metrics() or [{}])[-1]
    if self.chief and done == 0:
      self._log_input_images()
    self.log(f"training {c.model} for epochs {done + 1}..{c.epochs}, "
             f"{self.steps_per_epoch} steps of {c.batch_size} images each, "
             f"{self.strategy.num_replicas_in_sync} replica(s)")
    iterator = self._train_iterator(done)
    row = {}
    for epoch in range(done + 1, c.epochs + 1):
      start = time.time()
      train_loss, train_accuracy, images = self._train_epoch(epoch, iterator)
      train_seconds = time.time() - start
      test_loss, test_accuracy, test_top5 = self.evaluate()
      row = {"epoch": epoch, "train_loss": train_loss,
             "train_accuracy": train_accuracy, "test_loss": test_loss,
             "test_accuracy": test_accuracy, "test_top5_accuracy": test_top5,
             "lr": schedules.lr_at(self.schedule_of(epoch),
                                   epoch * self.steps_per_epoch - 1),
             "seconds": time.time() - start}
      if self.chief:
        self._end_epoch(epoch, row, images / train_seconds)
      self._save_checkpoint(epoch)
    return row

  def _end_epoch(self, epoch, row, images_per_sec):
    self.run_dir.append_metrics(row)
    self.run_dir.write_status("running", epoch, row)
    self.logger.scalars("train", epoch, {
        "loss": row["train_loss"], "accuracy": row["train_accuracy"],
        "learning_rate": row["lr"], "images_per_sec": images_per_sec})
    self.logger.scalars("test", epoch, {
        "loss": row["test_loss"], "accuracy": row["test_accuracy"],
        "top5_accuracy": row["test_top5_accuracy"]})
    first = (epoch - 1) * self.steps_per_epoch
    self.logger.scalar_series(
        "train", "learning_rate_per_step", range(first + 1, first + 1 +
                                                 self.steps_per_epoch),
        schedules.lr_series(self.schedule_of(epoch), first,
                            first + self.steps_per_epoch))
    if self.config.histograms:
      self._log_histograms(epoch)
    self.log(f"epoch {epoch}/{self.config.epochs}: "
             f"train_loss={row['train_loss']:.4f} "
             f"train_accuracy={row['train_accuracy']:.4f} "
             f"test_loss={row['test_loss']:.4f} "
             f"test_accuracy={row['test_accuracy']:.4f} "
             f"({row['seconds']:.1f}s, {images_per_sec:.0f} images/s)")

  def save_model(self):
    """Writes model.keras (via a temporary name) on the chief."""
    if not self.chief:
      return
    path = os.path.join(self.config.model_dir, "model.keras")
    tmp = os.path.join(self.config.model_dir, "model.incomplete.keras")
    self.model.save(tmp)
    os.replace(tmp, path)
