"""--preprocess: each function against its formula, the cache, the alias."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfcifar import data
from tfcifar.data import preprocess


def test_zca_whitened_train_data_has_identity_covariance():
  # A well-conditioned sample: 8x8x3 = 192 correlated dimensions with
  # standard deviations 1..3 along random axes (variances >> eps = 0.01),
  # 6000 rows.
  rng = np.random.RandomState(0)
  axes, _ = np.linalg.qr(rng.normal(size=(192, 192)))
  mixing = np.diag(np.linspace(1, 3, 192)) @ axes.T
  x = (rng.normal(size=(6000, 192)) @ mixing + 3).astype(np.float32)
  stats = preprocess.fit_zca(x)
  white = preprocess.zca(tf.constant(x.reshape(6000, 8, 8, 3)),
                         **stats).numpy().reshape(6000, -1)
  cov = np.cov(white, rowvar=False, bias=True)
  assert np.abs(cov - np.eye(192)).max() < 0.05
  np.testing.assert_allclose(white.mean(0), 0, atol=1e-4)
  # ZCA's W is the symmetric one: the whitened data stays closest to x.
  np.testing.assert_allclose(stats["matrix"], stats["matrix"].T, atol=1e-5)


def test_gcn_images_have_mean_0_and_the_stated_scale():
  rng = np.random.RandomState(1)
  images = rng.randint(0, 256, (20, 32, 32, 3)).astype(np.float32)
  images[:10] *= np.linspace(0.05, 1, 10)[:, None, None, None]  # contrasts
  out = preprocess.gcn(tf.constant(images)).numpy()
  flat, raw = out.reshape(20, -1), images.reshape(20, -1)
  np.testing.assert_allclose(flat.mean(1), 0, atol=1e-5)
  # std = s * std_x / sqrt(lambda + std_x^2), s = 1, lambda = 10.
  want = raw.std(1) / np.sqrt(10 + raw.var(1))
  np.testing.assert_allclose(flat.std(1), want, rtol=1e-4)
  assert np.all(flat.std(1)[10:] > 0.99)  # full-contrast images: std ~ 1
  flat_image = preprocess.gcn(tf.fill([1, 4, 4, 3], 7.0)).numpy()
  np.testing.assert_array_equal(flat_image, 0)  # no division by zero


def test_mean_subtracts_the_mean_train_rgb_value(make_synthetic_dataset):
  data_dir, splits = make_synthetic_dataset(num_train=40, num_test=16)
  stats = data.preprocess_stats(data_dir, "mean")
  m = splits["train"][0].astype(np.float64).mean() / 255
  assert float(stats["mean"]) == pytest.approx(m)
  images, _ = next(iter(data.make_dataset(
      data_dir, "test", 16, shuffle=False, preprocess="mean")))
  np.testing.assert_allclose(images, splits["test"][0] / 255 - m, atol=1e-6)


def test_fitted_stats_are_cached_beside_the_data(sample_data_dir):
  # The session's sample: fitted once (3072x3072), reused by test_techniques.
  data_dir = sample_data_dir
  first = data.preprocess_stats(data_dir, "zca")
  path = os.path.join(data_dir, "preprocess-zca.npz")
  assert os.path.exists(path)
  assert not [n for n in os.listdir(data_dir) if ".tmp-" in n]
  data.clear_cache()  # another process: reads the file, does not refit
  os.utime(path, (1, 1))
  again = data.preprocess_stats(data_dir, "zca")
  assert os.stat(path).st_mtime == 1
  np.testing.assert_array_equal(first["matrix"], again["matrix"])
  # The test split is whitened with the train statistics.
  images, _ = next(iter(data.make_dataset(
      data_dir, "test", 16, shuffle=False, preprocess="zca")))
  raw, _ = next(iter(data.make_dataset(data_dir, "test", 16, shuffle=False,
                                       normalize=False)))
  flat = raw.numpy().reshape(16, -1) / 255.0
  want = (flat - first["mean"]) @ first["matrix"].astype(np.float64)
  np.testing.assert_allclose(images.numpy().reshape(16, -1), want,
                             atol=2e-3)


def test_normalization_is_an_alias_of_preprocess(make_synthetic_dataset):
  data_dir, _ = make_synthetic_dataset(num_train=32, num_test=16)
  old, _ = next(iter(data.make_dataset(data_dir, "test", 16, shuffle=False,
                                       normalization="unit")))
  new, _ = next(iter(data.make_dataset(data_dir, "test", 16, shuffle=False,
                                       preprocess="unit")))
  np.testing.assert_array_equal(old, new)
