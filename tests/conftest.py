"""Shared pytest fixtures: small real and synthetic CIFAR-10 datasets."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfcifar import cifar10  # noqa: E402


def make_synthetic_split(num_examples, seed):
  """Random uint8 images and labels 0..9, every class present."""
  rng = np.random.RandomState(seed)
  images = rng.randint(0, 256, (num_examples,) + cifar10.IMAGE_SHAPE)
  labels = np.arange(num_examples) % cifar10.NUM_CLASSES
  rng.shuffle(labels)
  return images.astype(np.uint8), labels.astype(np.int64)


@pytest.fixture
def make_synthetic_dataset(tmp_path):
  """Factory: writes a synthetic dataset (records, labels.txt, manifest)."""

  def make(num_train=64, num_test=32, num_shards=1, seed=0, name="synthetic"):
    splits = {"train": make_synthetic_split(num_train, seed),
              "test": make_synthetic_split(num_test, seed + 1)}
    data_dir = str(tmp_path / name)
    cifar10.write_dataset(data_dir, splits, num_shards=num_shards,
                          source="synthetic")
    return data_dir, splits

  return make


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory):
  """The bundled real sample (2,000 train / 500 test), converted once."""
  from tfcifar import convert  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp("sample") / "cifar10")
  convert.run(data_dir, source="sample")
  return data_dir


TINY_RUN_FLAGS = ("--vgg_stages=8,M,16,M", "--max_train_examples=256",
                  "--max_test_examples=100", "--batch_size=64", "--epochs=1",
                  "--noxla", "--progress=none", "--corrupt=labels",
                  "--corrupt_prob=0.5")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, sample_data_dir):
  """A finished one-epoch label-corruption (p=0.5) run on the real sample:
  the run directory the analysis commands (evaluate, visualize, probe) read."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path_factory.mktemp("tiny_run") / "run")
  result = subprocess.run(
      [sys.executable, "-m", "tfcifar.train", f"--model_dir={model_dir}",
       f"--data_dir={sample_data_dir}", *TINY_RUN_FLAGS],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert result.returncode == 0, result.stderr
  return model_dir
