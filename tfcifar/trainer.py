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

`train_and_evaluate(config, strategy)` owns a run's life: the run directory,
the status transitions (running, finished, diverged, failed), resume and
divergence. `Trainer` holds the model, optimizer, data and checkpoints.

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

import dataclasses
import math
import os
import shutil
import time
import traceback

import keras
import numpy as np
import tensorflow as tf

from tfcifar import cifar10
from tfcifar import data
from tfcifar import distribute
from tfcifar import hparams
from tfcifar import models
from tfcifar import run_dir as run_dir_lib
from tfcifar import schedules
from tfcifar import summaries
from tfcifar.errors import UserError

# name -> (config: a TrainConfig, learning rate or schedule) -> optimizer.
OPTIMIZERS = {
    "sgd": lambda c, lr: keras.optimizers.SGD(lr),
    "momentum": lambda c, lr: keras.optimizers.SGD(
        lr, momentum=c.optim.momentum),
    "nesterov": lambda c, lr: keras.optimizers.SGD(
        lr, momentum=c.optim.momentum, nesterov=True),
    "adam": lambda c, lr: keras.optimizers.Adam(lr),
    # Decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2, line
    # 12): w -= lr * wd * w, on the kernels (see `make_optimizer`); the model
    # is then built without its L2 term (`model_config`).
    "adamw": lambda c, lr: keras.optimizers.AdamW(
        lr, weight_decay=c.model.weight_decay),
}
PREPROCESS_FILENAME = "preprocess.npz"  # the run's fitted input statistics


class Diverged(Exception):
  """The train loss became NaN or infinite during `epoch`."""

  def __init__(self, epoch):
    super().__init__(f"loss is not finite in epoch {epoch}")
    self.epoch = epoch


def resolve_xla(config):
  """`config` with --xla resolved: auto (None) is on with GPUs, off on CPUs."""
  if config.run.xla is not None:
    return config
  return config.replace(xla=bool(tf.config.list_physical_devices("GPU")))


def step_jit_compile(config, num_replicas):
  """Whether the per-replica step can be XLA-compiled.

  Synchronized BatchNorm all-reduces its moments (and, in the backward pass,
  their gradients) in the middle of the step; tf.distribute's all-reduce is a
  `merge_call`, which cannot run inside a nested (compiled) tf.function. So
  with --sync_bn on several replicas the step runs as plain TF in the replica
  function (`--nosync_bn` keeps XLA).
  """
  m = config.model
  return config.run.xla and not (m.bn and m.sync_bn and num_replicas > 1)


def model_config(config):
  """The ModelConfig the run builds: AdamW decays the weights itself
  (decoupled), not through the loss's L2 term."""
  if config.optim.optimizer == "adamw":
    return dataclasses.replace(config.model, weight_decay=0.0)
  return config.model


def make_optimizer(config, learning_rate=None, name=None, model=None):
  """The optimizer `name` (default --optimizer) at `learning_rate` (a float
  or a schedule; default --lr); AdamW skips biases and BatchNorm."""
  name = name or config.optim.optimizer
  optimizer = OPTIMIZERS[name](
      config, config.optim.lr if learning_rate is None else learning_rate)
  if name == "adamw" and model is not None:
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
  if config.run.precision == "mixed_float16":
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
  """[sum of per-example cross-entropy (smoothed with `label_smoothing`),
  number correct, number of examples]."""
  labels = tf.cast(labels, tf.int32)
  logits = tf.cast(logits, tf.float32)
  losses = smoothed_cross_entropy(labels, logits, label_smoothing)
  correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                             labels), tf.float32)
  count = tf.cast(tf.shape(labels)[0], tf.float32)
  return losses, tf.stack([tf.reduce_sum(losses), tf.reduce_sum(correct),
                           count])


def poison_unless_finite_everywhere(grads):
  """`grads`, or all NaN on every replica if any replica's are not finite.

  Keras' LossScaleOptimizer decides "finite" from replica 0's gradients,
  assuming they are all-reduced; ours are not yet (the optimizer all-reduces
  them). An all-reduced count of replicas with non-finite gradients makes the
  decision the same everywhere: skip the step and lower the scale on all.
  """
  finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
  bad = tf.distribute.get_replica_context().all_reduce(
      tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
  return [tf.where(bad > 0, tf.constant(np.nan, g.dtype), g) for g in grads]


def make_replica_step(model, optimizer, global_batch, num_replicas,
                      jit_compile=True, mixed_precision=False,
                      label_smoothing=0.0):
  """The per-replica train step: `replica_step((images, labels)) -> sums`.

  Its core (forward, loss with weight decay, gradients) is a tf.function
  compiled with `jit_compile` (None: inlined, for synchronized BatchNorm's
  all-reduces) and stateless: it takes the variables' values and returns the
  new non-trainable values (BatchNorm moving statistics, noise seed states)
  instead of assigning them, so the compiled function touches no resource of
  another replica's device and needs no cross-replica sync inside XLA. The
  replica step then assigns those values (BatchNorm moving statistics are
  averaged over replicas) and applies the gradients; the optimizer sums them
  over replicas (all-reduce) outside the compiled function.

  A model with auxiliary classifiers (GoogLeNet's `--aux_heads`) is run
  through `models.training_outputs`: each auxiliary head's cross-entropy,
  times its weight, is added to the loss; the sums report the main logits.
  With `label_smoothing` every cross-entropy term (main and auxiliary) uses
  the smoothed targets, and the sums report the smoothed main loss.

  Returns [sum of cross-entropy, number correct, number of examples] of the
  replica's batch.
  """
  model, aux_weights = models.training_outputs(model)

  def forward(trainable, non_trainable, images, labels):
    """(loss, new non-trainable values, metric sums); the loss includes the
    weight decay (the kernels' L2 regularisers at the values passed) once
    per replica, since gradients are summed over replicas."""
    outputs, new_non_trainable, regularizers = model.stateless_call(
        trainable, non_trainable, images, training=True, return_losses=True)
    logits, aux_logits = ((outputs[0], outputs[1:]) if aux_weights
                          else (outputs, ()))
    losses, sums = _metric_sums(labels, logits, label_smoothing)
    loss = tf.reduce_sum(losses)
    for weight, aux in zip(aux_weights, aux_logits):
      loss += weight * tf.reduce_sum(
          _metric_sums(labels, aux, label_smoothing)[0])
    loss /= global_batch
    if regularizers:
      loss += tf.add_n([tf.cast(r, tf.float32) for r in regularizers]) / (
          num_replicas)
    return loss, new_non_trainable, sums

  def gradients(trainable, non_trainable, images, labels, loss_scale):
    with tf.GradientTape() as tape:
      tape.watch(trainable)
      loss, new_non_trainable, sums = forward(trainable, non_trainable,
                                              images, labels)
      loss *= loss_scale
    return tape.gradient(loss, trainable), new_non_trainable, sums

  if jit_compile is not None:
    gradients = tf.function(gradients, jit_compile=jit_compile)

  def replica_step(batch):
    images, labels = batch
    # The loss scale is read here and passed in: not read inside XLA.
    loss_scale = (optimizer.dynamic_scale.value if mixed_precision else
                  tf.constant(1.0))
    grads, new_non_trainable, sums = gradients(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], images, labels,
        loss_scale)
    for variable, value in zip(model.non_trainable_variables,
                               new_non_trainable):
      variable.assign(value)
    if mixed_precision:
      grads = poison_unless_finite_everywhere(grads)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return sums

  return replica_step


class Trainer:
  """The model, optimizer, data and checkpoints of one run, and its steps."""

  def __init__(self, config, strategy):
    config = resolve_xla(config)
    self.config = config
    self.strategy = strategy
    self.chief = distribute.is_chief(strategy)
    c = config
    num_train = data.split_size(c.data.data_dir, "train",
                                c.data.max_train_examples or None)
    self.steps_per_epoch = num_train // c.optim.batch_size
    if self.steps_per_epoch < 1:
      raise UserError(f"--batch_size={c.optim.batch_size} is larger than the "
                      f"{num_train} train examples")
    keras.mixed_precision.set_global_policy(c.run.precision)
    o = c.optim
    self.schedule = schedules.make_schedule(
        o.lr_schedule, o.lr, self.steps_per_epoch,
        decay_epochs=o.lr_decay_epochs, decay_factor=o.lr_decay_factor,
        warmup_epochs=o.warmup_epochs, total_epochs=o.epochs)
    with strategy.scope():
      keras.utils.set_random_seed(o.seed)
      self.model = models.build_model(model_config(c))
      self.optimizer = make_optimizer(c, self.schedule, model=self.model)
      self.optimizer.build(self.model.trainable_variables)
      self.sgd_optimizer = None
      if o.switch_to_sgd_epoch:
        self.sgd_schedule = schedules.scaled(self.schedule,
                                             (o.sgd_lr or o.lr) / o.lr)
        self.sgd_optimizer = make_optimizer(c, self.sgd_schedule, "momentum")
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
    replicas = strategy.num_replicas_in_sync
    jit_compile = step_jit_compile(c, replicas)
    self._train_loops = [  # [0]: --optimizer; [1]: SGD after the switch
        self._make_train_loop(make_replica_step(
            self.model, optimizer, c.optim.batch_size, replicas,
            None if replicas > 1 and not jit_compile else jit_compile,
            c.run.precision == "mixed_float16", o.label_smoothing))
        for optimizer in (self.optimizer, self.sgd_optimizer) if optimizer]
    self._compiled_eval = tf.function(self._eval_sums, jit_compile=c.run.xla)
    self._test_dataset = None
    self.preprocess_stats = self._preprocess_stats()

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
    k = self.config.optim.switch_to_sgd_epoch
    return self.sgd_optimizer if k and epoch >= k else self.optimizer

  def schedule_of(self, epoch):
    return (self.sgd_schedule if self.optimizer_of(epoch) is self.sgd_optimizer
            else self.schedule)

  def lr_of(self, epoch):
    """The learning rate of the last step of `epoch`."""
    return schedules.lr_at(self.schedule_of(epoch),
                           epoch * self.steps_per_epoch - 1)

  def lr_series(self, epoch):
    """(steps 1-based, learning rates) of the steps of `epoch`."""
    first = (epoch - 1) * self.steps_per_epoch
    return (range(first + 1, first + 1 + self.steps_per_epoch),
            schedules.lr_series(self.schedule_of(epoch), first,
                                first + self.steps_per_epoch))

  def dataset(self, split, **overrides):
    d = self.config.data
    kwargs = dict(batch_size=self.config.optim.batch_size, augment=d.augment,
                  corrupt=d.corrupt, corrupt_prob=d.corrupt_prob,
                  seed=self.config.optim.seed, preprocess=d.preprocess,
                  autoaugment=d.autoaugment, cutout=d.cutout,
                  preprocess_stats=self.preprocess_stats,
                  max_examples=(d.max_train_examples if split == "train"
                                else d.max_test_examples) or None,
                  jit_compile=self.config.run.xla)
    kwargs.update(overrides)
    return data.make_dataset(d.data_dir, split, **kwargs)

  def train_iterator(self, first_epoch_index):
    def dataset_fn(input_context):
      return self.dataset("train", shuffle=True, repeat=True,
                          epoch=first_epoch_index, input_context=input_context)
    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  def _preprocess_stats(self):
    """The run's input statistics: recorded in model_dir (a resumed run and
    its evaluation reuse them), else the data's (then recorded)."""
    path = os.path.join(self.config.run.model_dir, PREPROCESS_FILENAME)
    if os.path.exists(path):
      return data.load_stats(path)
    stats = data.preprocess_stats(self.config.data.data_dir,
                                  self.config.data.preprocess)
    if self.chief and stats:
      os.makedirs(self.config.run.model_dir, exist_ok=True)
      data.save_stats(path, stats)
    return stats

  def train_epoch(self, epoch, iterator, progress):
    """(loss, accuracy, images) of one epoch; raises Diverged on NaN/inf."""
    optimizer = self.optimizer_of(epoch)
    if optimizer is self.sgd_optimizer and int(optimizer.iterations) == 0:
      # A fresh SGD state; its steps count on from the global step.
      optimizer.iterations.assign((epoch - 1) * self.steps_per_epoch)
    train_loop = self._train_loops[optimizer is self.sgd_optimizer]
    totals = np.zeros(3)
    step = 0
    while step < self.steps_per_epoch:
      num_steps = min(self.config.run.steps_per_loop,
                      self.steps_per_epoch - step)
      totals += train_loop(iterator, tf.constant(num_steps)).numpy()
      step += num_steps
      if not math.isfinite(totals[0]):
        raise Diverged(epoch)
      progress(step, totals)
    return totals[0] / totals[2], totals[1] / totals[2], totals[2]

  def evaluate(self):
    """(loss, accuracy, top-5 accuracy) on the whole test split, computed on
    this worker."""
    if self._test_dataset is None:
      self._test_dataset = self.dataset("test", shuffle=False, repeat=False)
    totals = np.zeros(4)
    for images, labels in self._test_dataset:
      totals += self._compiled_eval(images, labels).numpy()
    return totals[0] / totals[2], totals[1] / totals[2], totals[3] / totals[2]

  def _checkpoint_dir(self):
    model_dir = self.config.run.model_dir
    if self.chief:
      return os.path.join(model_dir, "checkpoints")
    _, task_id = distribute.task_info(self.strategy)
    return os.path.join(model_dir, f".worker{task_id}_checkpoints")

  def restore(self):
    """Restores the latest checkpoint; returns the number of completed epochs."""
    latest = tf.train.latest_checkpoint(
        os.path.join(self.config.run.model_dir, "checkpoints"))
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    self._manager = tf.train.CheckpointManager(
        self.checkpoint, self._checkpoint_dir(),
        max_to_keep=self.config.run.keep_checkpoints)
    return int(self.epoch.numpy())

  def save_checkpoint(self, epoch):
    self.epoch.assign(epoch)
    self._manager.save(checkpoint_number=epoch)
    if not self.chief:  # every worker saves (collectives); only the chief keeps
      shutil.rmtree(self._checkpoint_dir(), ignore_errors=True)

  def save_model(self, path):
    """Writes the model to `path` through a temporary name."""
    tmp = path[:-len(".keras")] + ".incomplete.keras"
    self.model.save(tmp)
    os.replace(tmp, path)


def train_and_evaluate(config, strategy, log=print):
  """Trains and evaluates `config` in its run directory; returns the exit code.

  The one owner of the run's life: refuses a diverged run, or one with other
  flags or other data; writes config, flags, data checksums and hparams;
  resumes from the last checkpoint; writes each epoch's metrics, status and
  TensorBoard summaries, and the final status (finished, diverged or failed)
  and model. A failure leaves status `failed` (once training started) and
  error.log; a UserError is re-raised (exit 2). Only the chief writes.
  """
  c = config = resolve_xla(config)  # recorded resolved in config.json
  run_dir = run_dir_lib.RunDir(c.run.model_dir)
  status = run_dir.read_status()
  if status.get("status") == "diverged":
    log(f"{c.run.model_dir} diverged in epoch {status.get('diverged_epoch')} "
        "earlier; remove it to train again")
    return run_dir_lib.EXIT_DIVERGED
  chief = distribute.is_chief(strategy)
  started = False
  try:
    run_dir.check_same_run(c)
    data_id = run_dir_lib.data_identity(cifar10.read_manifest(c.data.data_dir))
    run_dir.check_same_data(data_id, c.data.data_dir)
    trainer = Trainer(c, strategy)
    if chief:
      run_dir.write_config(c)
      run_dir.write_data(data_id)
      if not status:
        hparams.write_hparams(c.run.model_dir, c.identity())
    done = trainer.restore()
    if chief:
      run_dir.truncate_metrics(done)
    started = True
    row = _train_epochs(trainer, run_dir, done, log)
  except Diverged as e:
    if chief:
      rows = run_dir.read_metrics()
      run_dir.write_status("diverged", e.epoch - 1, rows[-1] if rows else {},
                           diverged_epoch=e.epoch)
    log(f"diverged: the train loss is NaN/inf in epoch {e.epoch}; metrics of "
        f"earlier epochs are in {run_dir.file(run_dir_lib.METRICS_FILENAME)}")
    return run_dir_lib.EXIT_DIVERGED
  except Exception as e:  # keep what happened in the run directory
    if chief:
      _record_failure(run_dir, e, started)
    raise
  if chief:
    trainer.save_model(run_dir.file(run_dir_lib.MODEL_FILENAME))
    run_dir.write_status("finished", row.get("epoch", c.optim.epochs), row)
    log(f"finished: test_accuracy={row.get('test_accuracy', float('nan')):.4f}"
        f"; metrics in {run_dir.file(run_dir_lib.METRICS_FILENAME)}, the model "
        f"in {run_dir.file(run_dir_lib.MODEL_FILENAME)}; curves: tensorboard "
        f"--logdir={c.run.model_dir}")
  return run_dir_lib.EXIT_OK


def _record_failure(run_dir, error, started):
  """error.log (the message, or the traceback of an unexpected error) and,
  once training started, status `failed` with the message."""
  message = (str(error) if isinstance(error, UserError)
             else f"{type(error).__name__}: {error}")
  if started:
    rows = run_dir.read_metrics()
    run_dir.write_status("failed", rows[-1]["epoch"] if rows else 0,
                         rows[-1] if rows else {}, error=message)
  os.makedirs(run_dir.path, exist_ok=True)
  run_dir_lib.write_text_atomic(
      run_dir.file(run_dir_lib.ERROR_FILENAME),
      message + "\n" if isinstance(error, UserError)
      else traceback.format_exc())


def _train_epochs(trainer, run_dir, done, log):
  """Epochs done+1..epochs; returns the last metrics row.

  Each epoch's CSV rows are written before its checkpoint (an epoch redone
  after a kill replaces them) and its TensorBoard summaries after it, so that
  TensorBoard never gets a step twice.
  """
  c, chief = trainer.config, trainer.chief
  epochs = c.optim.epochs
  if done >= epochs:
    log(f"{c.run.model_dir}: already trained for {done} epochs")
    return (run_dir.read_metrics() or [{}])[-1]
  log(f"training {c.model.name} for epochs {done + 1}..{epochs}, "
      f"{trainer.steps_per_epoch} steps of {c.optim.batch_size} images each, "
      f"{trainer.strategy.num_replicas_in_sync} replica(s)")
  logger = summaries.Logger(c.run.model_dir) if chief else summaries.NullLogger()
  activations = None
  if chief and c.run.histograms:
    activations = summaries.ActivationProbe(trainer.model, next(iter(
        trainer.dataset("train", shuffle=False, repeat=False,
                        augment=False)))[0])
  iterator = trainer.train_iterator(done)
  row = {}
  try:
    for epoch in range(done + 1, epochs + 1):
      start = time.time()
      progress = summaries.progress(c.run.progress if chief else "none",
                                    epoch, trainer.steps_per_epoch, log)
      train_loss, train_accuracy, images = trainer.train_epoch(
          epoch, iterator, progress)
      images_per_sec = images / (time.time() - start)
      test_loss, test_accuracy, test_top5 = trainer.evaluate()
      row = {"epoch": epoch, "train_loss": train_loss,
             "train_accuracy": train_accuracy, "test_loss": test_loss,
             "test_accuracy": test_accuracy, "test_top5_accuracy": test_top5,
             "lr": trainer.lr_of(epoch),
             "seconds": time.time() - start}
      outputs = activations(epoch) if activations is not None else None
      if chief:
        run_dir.append_metrics(row)
        if outputs is not None:
          run_dir.append_activations(run_dir_lib.activation_rows(epoch,
                                                                 outputs))
      trainer.save_checkpoint(epoch)
      if chief:
        run_dir.write_status("running", epoch, row)
        if epoch == 1:
          batch = next(iter(trainer.dataset("train", shuffle=True,
                                            repeat=False, epoch=0,
                                            normalize=False)))
          logger.image_grid("train_images", batch[0].numpy())
        logger.epoch(epoch, row, images_per_sec)
        logger.scalar_series("train", "learning_rate_per_step",
                             *trainer.lr_series(epoch))
        if outputs is not None:
          logger.histograms(epoch, outputs)
        log(summaries.epoch_line(row, epochs, images_per_sec))
  finally:
    logger.close()
  return row
