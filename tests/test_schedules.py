"""Learning-rate schedules against their papers' formulas."""

import math

import numpy as np
import pytest

from tfcifar import schedules
from tfcifar.errors import UserError

S = 5  # steps per epoch


def series(name, epochs=4, **kwargs):
  schedule = schedules.make_schedule(name, 0.1, S, total_epochs=epochs,
                                     **kwargs)
  return schedules.lr_series(schedule, 0, epochs * S)


def test_step_decays_at_the_first_step_of_the_epoch():
  lrs = series("step", decay_epochs="2")
  last_of_epoch = lrs[S - 1::S]
  np.testing.assert_allclose(last_of_epoch, [0.1, 0.1, 0.01, 0.01])
  np.testing.assert_allclose(lrs[2 * S - 1:2 * S + 1], [0.1, 0.01])
  # Epochs as a list: 0.1 -> 0.01 after epoch 1 -> 0.001 after epoch 3.
  np.testing.assert_allclose(series("step", decay_epochs="1,3")[S - 1::S],
                             [0.1, 0.01, 0.01, 0.001])


def test_cosine_falls_every_epoch_as_sgdr():
  lrs = series("cosine", epochs=6)
  t = np.arange(6 * S)
  np.testing.assert_allclose(lrs, 0.05 * (1 + np.cos(np.pi * t / (6 * S))),
                             rtol=1e-5)
  per_epoch = lrs[S - 1::S]
  assert all(b < a for a, b in zip(per_epoch, per_epoch[1:]))


def test_exponential_is_smooth():
  lrs = series("exponential", decay_epochs="2", decay_factor=0.5)
  np.testing.assert_allclose(lrs, 0.1 * 0.5 ** (np.arange(4 * S) / (2 * S)),
                             rtol=1e-5)


def test_warmup_rises_linearly_then_follows_the_schedule():
  lrs = series("constant", warmup_epochs=2)
  ramp = lrs[:2 * S]
  np.testing.assert_allclose(ramp, 0.1 * np.arange(1, 2 * S + 1) / (2 * S),
                             rtol=1e-6)
  np.testing.assert_allclose(np.diff(ramp), 0.1 / (2 * S), rtol=1e-4)
  np.testing.assert_allclose(lrs[2 * S:], 0.1)


@pytest.mark.parametrize("name, kwargs, flag", [
    ("step", {}, "--lr_decay_epochs"),
    ("step", dict(decay_epochs="3,2"), "increasing"),
    ("cosine", dict(decay_epochs="1,2"), "one"),
    ("constant", dict(decay_epochs="2"), "--lr_decay_epochs"),
    ("linear", {}, "--lr_schedule"),
])
def test_bad_schedules_are_named(name, kwargs, flag):
  with pytest.raises(UserError, match=flag):
    series(name, **kwargs)


def test_constant_is_a_plain_float():
  """The study's optimizer gets exactly the number it always got."""
  assert schedules.make_schedule("constant", 0.05, S) == 0.05
  assert math.isclose(schedules.lr_at(0.05, 123), 0.05)
