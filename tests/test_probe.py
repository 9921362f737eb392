"""tfcifar.probe: the patch shuffle and the texture-probe command."""

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfcifar import probe
from tfcifar import run_dir as run_dir_lib
from tfcifar.errors import UserError


def cli(*args):
  return subprocess.run([sys.executable, "-m", "tfcifar.probe", *args],
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def random_images(count=3, seed=0):
  return np.random.default_rng(seed).integers(
      0, 256, (count, 32, 32, 3), dtype=np.uint8)


def patch_bytes(image, k):
  """The k x k patches of one image as bytes, cut by explicit loops."""
  return [image[r:r + k, c:c + k].tobytes()
          for r in range(0, image.shape[0], k)
          for c in range(0, image.shape[1], k)]


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16])
def test_shuffle_keeps_the_multiset_of_patches_of_every_image(k):
  images = random_images()
  shuffled = probe.shuffle_patches(images, k, seed=1)
  assert shuffled.shape == images.shape and shuffled.dtype == images.dtype
  for before, after in zip(images, shuffled):
    assert sorted(patch_bytes(after, k)) == sorted(patch_bytes(before, k))
  # and it does move them (4 patches of 16 px stay put with chance 1/24)
  assert not np.array_equal(images, shuffled)


def test_patch_size_32_is_the_identity():
  images = random_images()
  np.testing.assert_array_equal(probe.shuffle_patches(images, 32, seed=3),
                                images)


def test_shuffle_is_seeded_and_per_image():
  images = np.repeat(random_images(1), 2, axis=0)  # two identical images
  first = probe.shuffle_patches(images, 8, seed=5)
  np.testing.assert_array_equal(first, probe.shuffle_patches(images, 8, 5))
  assert not np.array_equal(first, probe.shuffle_patches(images, 8, 6))
  assert not np.array_equal(first[0], first[1])  # a permutation per image


def test_patch_sizes_must_tile_the_image():
  with pytest.raises(UserError, match="does not tile"):
    probe.shuffle_patches(random_images(), 5)


def test_accuracies_of_a_shape_and_a_texture_classifier():
  images = random_images(4).astype(np.float32)
  labels = np.array([0, 1, 2, 3])

  def classifier(same):  # right exactly when it recognises its image
    def predict_fn(inputs):
      hits = np.array([same(x, image) for x, image in zip(inputs, images)])
      return np.eye(4)[np.where(hits, labels, (labels + 1) % 4)]
    return predict_fn

  shape = probe.patch_shuffle_accuracies(
      classifier(np.array_equal), images, labels, [8, 4])
  assert shape == [(4, 0.0), (8, 0.0), (32, 1.0)]  # 32 = intact, added
  texture = probe.patch_shuffle_accuracies(
      classifier(lambda a, b: np.array_equal(np.sort(a, None),
                                             np.sort(b, None))),
      images, labels, [8, 4])
  assert texture == [(4, 1.0), (8, 1.0), (32, 1.0)]


def test_command_compares_runs(tmp_path, tiny_run):
  other = str(tmp_path / "other")
  shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("evaluation"))
  figure = str(tmp_path / "comparison.png")
  result = cli(f"--model_dir={tiny_run}", f"--model_dir={other}",
               "--patch_sizes=4,16", f"--out={figure}")
  assert result.returncode == 0, result.stderr
  assert os.path.getsize(figure) > 0
  test_accuracy = run_dir_lib.RunDir(tiny_run).read_metrics()[-1][
      "test_accuracy"]
  for model_dir in (tiny_run, other):
    with open(os.path.join(model_dir, "evaluation", "patch_shuffle.csv")) as f:
      rows = list(csv.reader(f))
    assert rows[0] == ["patch_size", "accuracy"]
    assert [r[0] for r in rows[1:]] == ["4", "16", "32"]
    accuracies = [float(r[1]) for r in rows[1:]]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    # k = 32 is the intact image: the trainer's own test accuracy.
    assert accuracies[-1] == pytest.approx(test_accuracy, abs=1e-6)
