"""Learning-rate schedules: a pure function of the global step.

  schedule = schedules.make_schedule("step", lr=0.1, steps_per_epoch=390,
                                     decay_epochs=(81, 122), decay_factor=0.1)
  schedules.lr_at(schedule, step)   # the lr of step `step` (0-based)

A schedule is Keras's (`keras.optimizers.schedules`), evaluated by the
optimizer at its `iterations` counter, so a resumed run continues exactly
where it stopped. Epoch e (1-based) runs steps (e-1)*S .. e*S-1, S = steps
per epoch; every decay takes effect at the first step of an epoch.

  constant     lr (a float: the optimizer is exactly the study's)
  step         lr * factor^k after the k-th decay epoch: one number N decays
               every N epochs, a list "81,122" at those epochs (He et al.
               2016, Sec. 4.2: lr 0.1, divided by 10 at 32k and 48k
               iterations)
  cosine       lr * (1 + cos(pi * t / T)) / 2 over T = --lr_decay_epochs
               (default: --epochs) (Loshchilov & Hutter 2017, SGDR, Eq. 5,
               one cycle, eta_min = 0)
  exponential  lr * factor^(t / N), N = --lr_decay_epochs (default 1): a
               smooth decay by `factor` every N epochs

`warmup_epochs` W > 0 multiplies any of them by min(1, (step + 1) / (W*S)):
a linear ramp from lr/(W*S) to the schedule's value at the end of epoch W
(Goyal et al. 2017, Sec. 2.2, "gradual warmup").
"""

import keras
import numpy as np
import tensorflow as tf

from tfcifar.errors import UserError


def parse_decay_epochs(text):
  """'100' -> (100,), '81,122' -> (81, 122), '' -> (); UserError if bad."""
  if isinstance(text, (tuple, list)):
    text = ",".join(str(t) for t in text)
  tokens = [t.strip() for t in str(text or "").split(",") if t.strip()]
  if not all(t.isdigit() and int(t) > 0 for t in tokens):
    raise UserError(f"--lr_decay_epochs={text!r} must be a positive number of "
                    "epochs or increasing epochs such as 81,122")
  epochs = tuple(int(t) for t in tokens)
  if list(epochs) != sorted(set(epochs)):
    raise UserError(f"--lr_decay_epochs={text!r} must be increasing")
  return epochs


def _constant(lr, steps_per_epoch, decay_epochs, factor, total_epochs):
  del steps_per_epoch, factor, total_epochs
  if decay_epochs:
    raise UserError("--lr_decay_epochs needs --lr_schedule=step, cosine or "
                    "exponential")
  return lr


def _step(lr, steps_per_epoch, decay_epochs, factor, total_epochs):
  del total_epochs
  if not decay_epochs:
    raise UserError("--lr_schedule=step needs --lr_decay_epochs (an interval "
                    "such as 100, or epochs such as 81,122)")
  if len(decay_epochs) == 1:  # every N epochs
    return keras.optimizers.schedules.ExponentialDecay(
        lr, decay_epochs[0] * steps_per_epoch, factor, staircase=True)
  # PiecewiseConstantDecay keeps values[i] while step <= boundaries[i].
  boundaries = [e * steps_per_epoch - 1 for e in decay_epochs]
  values = [lr * factor ** i for i in range(len(decay_epochs) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def _single(name, decay_epochs):
  if len(decay_epochs) > 1:
    raise UserError(f"--lr_schedule={name} takes one --lr_decay_epochs "
                    f"number, got {','.join(map(str, decay_epochs))}")
  return decay_epochs[0] if decay_epochs else None


def _cosine(lr, steps_per_epoch, decay_epochs, factor, total_epochs):
  del factor
  horizon = _single("cosine", decay_epochs) or total_epochs
  return keras.optimizers.schedules.CosineDecay(
      lr, horizon * steps_per_epoch, alpha=0.0)


def _exponential(lr, steps_per_epoch, decay_epochs, factor, total_epochs):
  del total_epochs
  interval = _single("exponential", decay_epochs) or 1
  return keras.optimizers.schedules.ExponentialDecay(
      lr, interval * steps_per_epoch, factor)


SCHEDULES = {
    "constant": _constant,
    "step": _step,
    "cosine": _cosine,
    "exponential": _exponential,
}


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
  """`base(step) * min(1, (step + 1) / warmup_steps)` (Goyal et al. 2017)."""

  def __init__(self, base, warmup_steps):
    self.base = base
    self.warmup_steps = int(warmup_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    ramp = tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
    base = self.base(step) if callable(self.base) else self.base
    return ramp * tf.cast(base, tf.float32)

  def get_config(self):
    return {"warmup_steps": self.warmup_steps}


def make_schedule(name, lr, steps_per_epoch, *, decay_epochs=(),
                  decay_factor=0.1, warmup_epochs=0, total_epochs=1):
  """The lr schedule `name` (a SCHEDULES key): a float or a Keras schedule."""
  if name not in SCHEDULES:
    raise UserError(f"--lr_schedule={name} is not one of "
                    f"{', '.join(SCHEDULES)}")
  schedule = SCHEDULES[name](lr, steps_per_epoch,
                             parse_decay_epochs(decay_epochs), decay_factor,
                             total_epochs)
  if warmup_epochs > 0:
    schedule = LinearWarmup(schedule, warmup_epochs * steps_per_epoch)
  return schedule


def scaled(schedule, factor):
  """`schedule` times `factor` (the lr of another optimizer phase)."""
  if factor == 1:
    return schedule
  if not callable(schedule):
    return schedule * factor
  return _Scaled(schedule, factor)


class _Scaled(keras.optimizers.schedules.LearningRateSchedule):

  def __init__(self, base, factor):
    self.base, self.factor = base, float(factor)

  def __call__(self, step):
    return self.base(step) * self.factor

  def get_config(self):
    return {"factor": self.factor}


def lr_at(schedule, step):
  """The learning rate of global step `step` (0-based) as a Python float."""
  if not callable(schedule):
    return float(schedule)
  return float(schedule(tf.constant(step, tf.int64)))


def lr_series(schedule, start, stop):
  """The learning rates of global steps start..stop-1, a float numpy array."""
  steps = tf.range(start, stop, dtype=tf.int64)
  if not callable(schedule):
    return np.full([stop - start], float(schedule))
  return np.asarray(schedule(steps), np.float64).reshape([stop - start])
