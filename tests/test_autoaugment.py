"""AutoAugment's CIFAR-10 policy: the draws, and each operation against an
independent implementation (PIL for the photometric ones, TensorFlow's
ImageProjectiveTransformV3 for the geometric ones), and every ordered pair
of operations after crop+flip, and the input pipeline's batches on policy
draws, against applying the operations one by one (numpy and PIL)."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from tfcifar.data import autoaugment as aa
from tfcifar.data import input_pipeline
from tfcifar.data import preprocess


def test_sub_policies_run_with_their_published_probabilities():
  n = 100_000
  policy, op, magnitude = aa.autoaugment_params(n, tf.constant([7, 8]))
  policy, op, magnitude = policy.numpy(), op.numpy(), magnitude.numpy()
  counts = np.bincount(policy, minlength=25)
  expected = n / 25
  sigma = np.sqrt(n * (1 / 25) * (24 / 25))
  assert len(counts) == 25 and np.abs(counts - expected).max() < 4.5 * sigma
  # Cubuk et al. 2019, Table 7 (torchvision's AutoAugmentPolicy.CIFAR10).
  for i, sub_policy in enumerate(aa.CIFAR10_POLICY):
    mine = policy == i
    for slot, (name, prob, _) in enumerate(sub_policy):
      ran = op[mine, slot] == aa.OP_INDEX[name]
      assert np.all(op[mine, slot][~ran] == 0)  # else: nothing
      k = mine.sum()
      sd = np.sqrt(k * prob * (1 - prob)) + 1e-9
      assert abs(ran.sum() - k * prob) <= 4.5 * sd, (i, slot, name)
  # Signed magnitudes are negative half of the time.
  rotate = (op == aa.OP_INDEX["Rotate"])
  assert abs((magnitude[rotate] < 0).mean() - 0.5) < 0.05
  np.testing.assert_allclose(np.unique(np.abs(magnitude[rotate])),
                             [30 * 2 / 9])  # bin 2 of linspace(0, 30, 10)


def test_magnitude_bins_are_torchvisions():
  bins = aa.magnitude_bins(32)
  np.testing.assert_array_equal(bins["Posterize"][0],
                                [8, 8, 7, 7, 6, 6, 5, 5, 4, 4])
  np.testing.assert_allclose(bins["Solarize"][0][[0, 9]], [255, 0])
  np.testing.assert_array_equal(  # int(linspace(0, 150/331*32, 10))
      bins["TranslateX"][0], [0, 1, 3, 4, 6, 8, 9, 11, 12, 14])


def sample_images():
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (8, 32, 32, 3)).astype(np.uint8)
  blocks = rng.randint(30, 200, (4, 8, 8, 3))  # smooth, low contrast
  images[4:] = np.repeat(np.repeat(blocks, 4, 1), 4, 2)
  return images


PIL_OPS = {
    "Brightness": lambda im, m: ImageEnhance.Brightness(im).enhance(1 + m),
    "Color": lambda im, m: ImageEnhance.Color(im).enhance(1 + m),
    "Contrast": lambda im, m: ImageEnhance.Contrast(im).enhance(1 + m),
    "Sharpness": lambda im, m: ImageEnhance.Sharpness(im).enhance(1 + m),
    "Posterize": lambda im, m: ImageOps.posterize(im, int(m)),
    "Solarize": lambda im, m: ImageOps.solarize(im, m),
    "AutoContrast": lambda im, m: ImageOps.autocontrast(im),
    "Equalize": lambda im, m: ImageOps.equalize(im),
    "Invert": lambda im, m: ImageOps.invert(im),
}


@pytest.mark.parametrize("name, magnitude", [
    ("Brightness", 0.5), ("Brightness", -0.6), ("Color", 0.7),
    ("Color", -0.5), ("Contrast", 0.6), ("Contrast", -0.6),
    ("Sharpness", 0.9), ("Sharpness", -0.9), ("Posterize", 5),
    ("Solarize", 100), ("AutoContrast", 0), ("Equalize", 0), ("Invert", 0)])
def test_photometric_operations_equal_pil(name, magnitude):
  images = sample_images()
  op = tf.fill([8, 1], aa.OP_INDEX[name])
  mag = tf.fill([8, 1], tf.constant(float(magnitude), tf.float64))
  ours = aa.autoaugment(images, op, mag).numpy()
  want = np.stack([np.asarray(PIL_OPS[name](Image.fromarray(i), magnitude))
                   for i in images])
  np.testing.assert_array_equal(ours, want)


@pytest.mark.parametrize("name", ["Brightness", "Color", "Contrast",
                                  "Sharpness"])
def test_enhance_operations_equal_pil_at_every_policy_magnitude(name):
  """Every signed magnitude bin: PIL blends in float32 with the factor
  1 + m passed as a C float, so a product such as 1.3 * 10 truncates to 12;
  computed in doubles it would give 13."""
  values, _ = aa.magnitude_bins()[name]
  images = sample_images()
  for magnitude in sorted(set(values) | set(-values)):
    op = tf.fill([8, 1], aa.OP_INDEX[name])
    mag = tf.fill([8, 1], tf.constant(float(magnitude), tf.float64))
    want = np.stack([np.asarray(PIL_OPS[name](Image.fromarray(i), magnitude))
                     for i in images])
    for jit_compile in (True, False):
      ours = aa.autoaugment(images, op, mag, jit_compile=jit_compile).numpy()
      np.testing.assert_array_equal(ours, want, err_msg=f"{name} {magnitude}")


@pytest.mark.parametrize("name, scale", [
    ("ShearX", 0.3), ("ShearY", 0.3), ("TranslateX", 14), ("TranslateY", 14),
    ("Rotate", 30)])
def test_geometric_operations_equal_tf_projective_transform(name, scale):
  images = tf.constant(sample_images(), tf.float32)
  magnitude = tf.constant(np.linspace(-1, 1, 8) * scale, tf.float32)
  transform = aa.inverse_affine(tf.fill([8], aa.OP_INDEX[name]), magnitude,
                                32, 32)
  ours = aa.affine_nearest(images, transform)
  want = tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=tf.concat([transform, tf.zeros([8, 2])], 1),
      output_shape=[32, 32], fill_value=0.0, interpolation="NEAREST",
      fill_mode="CONSTANT").numpy()
  # Equal but where a source coordinate is a tie (x.5) in float32: rounding
  # of ties differs (ShearX: 12 of 24576 values).
  assert (ours.numpy() != want).mean() < 1e-3
  if name.startswith("Translate"):
    np.testing.assert_array_equal(ours, want)


def test_seeded_batch_and_compiled_equals_eager():
  images = tf.constant(np.random.RandomState(3).randint(
      0, 256, (64, 32, 32, 3)).astype(np.uint8))
  seed = tf.constant([1, 2])
  a = aa.autoaugment_batch(images, seed).numpy()
  np.testing.assert_array_equal(a, aa.autoaugment_batch(images, seed))
  assert not np.array_equal(a, aa.autoaugment_batch(images, [1, 3]))
  _, op, magnitude = aa.autoaugment_params(64, seed)
  b = aa.autoaugment(images, op, magnitude, jit_compile=False).numpy()
  np.testing.assert_array_equal(a, b)  # XLA's passes are exact


def numpy_affine(image, transform):
  """Nearest neighbour (round half up) under the inverse map `transform`
  (6 float32 numbers), 0 outside: the definition, in numpy float32."""
  t = np.asarray(transform, np.float32)
  ys, xs = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in (32, 32)),
                       indexing="ij")
  src_x = np.floor(t[0] * xs + t[1] * ys + t[2] + np.float32(0.5)).astype(int)
  src_y = np.floor(t[3] * xs + t[4] * ys + t[5] + np.float32(0.5)).astype(int)
  valid = (src_x >= 0) & (src_x < 32) & (src_y >= 0) & (src_y < 32)
  out = np.zeros_like(image)
  out[valid] = image[src_y[valid], src_x[valid]]
  return out


SCALE = {"ShearX": 0.3, "ShearY": 0.3, "TranslateX": 14, "TranslateY": 14,
         "Rotate": 30}


def one_by_one(image, crop, ops, magnitudes):
  """The reference: crop+flip (row and column offsets in the reflect-padded
  image, flip), then each operation on its own: geometric ones in numpy
  (`numpy_affine`), the others in PIL."""
  row, col, flip = crop
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")
  out = padded[row:row + 32, col:col + 32]
  out = np.ascontiguousarray(out[:, ::-1] if flip else out)
  for op, m in zip(ops, magnitudes):
    name = aa.OPS[op]
    if name in SCALE:
      transform = aa.inverse_affine(tf.constant([op]),
                                    tf.constant([m], tf.float32), 32, 32)
      out = numpy_affine(out, transform.numpy()[0])
    elif name != "Identity":
      out = np.asarray(PIL_OPS[name](Image.fromarray(out), m))
  return out


def test_every_pair_after_crop_flip_equals_the_operations_one_by_one():
  # The geometric operations of both slots and crop+flip are one gather, and
  # a geometric operation after Brightness/Color/Posterize moves before them;
  # after Invert/Equalize/Sharpness it may not. The lookup operations compose
  # tables; an operation after one reads the image through its table.
  n = len(aa.OPS)
  rng = np.random.RandomState(5)
  op = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"),
                -1).reshape(-1, 2).astype(np.int32)  # every ordered pair
  names = np.array(aa.OPS)[op]
  magnitude = rng.choice([-0.7, 0.5, 0.9], op.shape)
  for name, scale in SCALE.items():
    at = names == name
    magnitude[at] = rng.uniform(-1, 1, at.sum()) * scale
  magnitude[np.isin(names, ["TranslateX", "TranslateY"])] //= 1
  for name, values in (("Posterize", np.arange(1, 9)),
                       ("Solarize", np.linspace(0, 255, 13))):
    at = names == name
    magnitude[at] = rng.choice(values, at.sum())
  images = np.concatenate([sample_images()] * (len(op) // 8 + 1))[:len(op)]
  crop = [t.numpy() for t in aa.augment_lib.crop_flip_params(
      len(op), tf.constant([4, 4]))]
  ours = aa.autoaugment(images, tf.constant(op), tf.constant(magnitude),
                        crop_flip=crop).numpy()
  for i in range(len(op)):
    want = one_by_one(images[i], [t[i] for t in crop], op[i], magnitude[i])
    np.testing.assert_array_equal(ours[i], want, err_msg=str(names[i]))


def test_pipeline_batches_equal_the_operations_one_by_one():
  """The input pipeline's transform (crop+flip, AutoAugment with the table
  lookup in the last compiled pass, standardize) on policy draws."""
  images = tf.constant(np.random.RandomState(6).randint(
      0, 256, (64, 32, 32, 3)).astype(np.uint8))
  mean, std = [120.0, 115.0, 100.0], [60.0, 61.0, 66.0]
  standardize = lambda x: preprocess.standardize(x, mean, std)
  as_uint8 = input_pipeline.batch_transform(True, None, autoaugment=True)
  as_float = input_pipeline.batch_transform(True, standardize,
                                            autoaugment=True)
  for seed in range(4):
    seeds = {"augment": tf.constant([seed, 1]),
             "autoaugment": tf.constant([seed, 2])}
    crop = [t.numpy() for t in aa.augment_lib.crop_flip_params(
        64, seeds["augment"])]
    _, op, magnitude = (t.numpy() for t in aa.autoaugment_params(
        64, seeds["autoaugment"]))
    want = np.stack([one_by_one(images[i], [t[i] for t in crop], op[i],
                                magnitude[i]) for i in range(64)])
    np.testing.assert_array_equal(as_uint8(images, seeds), want)
    np.testing.assert_array_equal(as_float(images, seeds), standardize(want))
