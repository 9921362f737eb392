"""Shared helpers of the model tests: tiny VGGLike models and inputs."""

import keras
import numpy as np
import pytest

from tfcifar import models

TINY = dict(vgg_stages="8,M,16,M", dense_units=(12,))


@pytest.fixture(autouse=True)
def seeded():
  keras.utils.set_random_seed(0)


def tiny_model(**overrides):
  return models.build_model(models.ModelConfig(**{**TINY, **overrides}))


def images(batch=4, seed=0):
  return np.random.RandomState(seed).normal(
      size=(batch, 32, 32, 3)).astype("float32")
