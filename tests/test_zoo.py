"""The model zoo: parameter counts by hand (and the published numbers), one
step of the real train step, `.keras` round trips, stochastic depth against
Huang et al.'s formula, BagNet's receptive field, the aux heads' loss, and
the zoo's flagfiles: valid configs whose flags do what their headers say."""

import functools
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcifar import cifar10
from tfcifar import config as config_lib
from tfcifar import models
from tfcifar import run_dir as run_dir_lib
from tfcifar import schedules
from tfcifar import trainer as trainer_lib
from tfcifar.errors import UserError
from tfcifar.models import stochastic_depth

ISSUE_MODELS = ("lenet5", "alexnet", "vgglike", "googlenet", "inception_small",
                "resnet", "resnet34", "shallow_cnn", "cnn", "cnn_bn",
                "vgg_dropout", "bagnet", "mlp")


@pytest.fixture(autouse=True)
def seeded():
  keras.utils.set_random_seed(0)


def build(name, **overrides):
  return models.build_model(models.ModelConfig(name=name, **overrides))


def images(batch=4, seed=0):
  return np.random.RandomState(seed).normal(
      size=(batch, 32, 32, 3)).astype("float32")


# --- parameter counts, by hand from the architectures -----------------------


def conv(k, cin, cout, bn=False):
  """(trainable, non-trainable) of a kxk conv (+ BN, which replaces bias)."""
  return (k * k * cin * cout + 2 * cout, 2 * cout) if bn else (
      k * k * cin * cout + cout, 0)


def dense(fan_in, units, bn=False):
  return conv(1, fan_in, units, bn)


def total(*parts):
  return tuple(int(sum(p[i] for p in parts)) for i in (0, 1))


def resnet_counts(depth):
  n, parts, cin = (depth - 2) // 6, [conv(3, 3, 16, True)], 16
  for width in (16, 32, 64):  # option A shortcuts have no parameters
    for _ in range(n):
      parts += [conv(3, cin, width, True), conv(3, width, width, True)]
      cin = width
  return total(*parts, dense(64, 10))


def resnet34_counts():
  parts, cin = [conv(3, 3, 64, True)], 64
  for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6),
                                           (512, 3))):
    for i in range(blocks):
      parts += [conv(3, cin, width, True), conv(3, width, width, True)]
      if stage > 0 and i == 0:
        parts.append(conv(1, cin, width, True))  # projection shortcut
      cin = width
  return total(*parts, dense(512, 10))


GOOGLENET = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64),
             (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
             (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
             (528, 256, 160, 320, 32, 128, 128),
             (832, 256, 160, 320, 32, 128, 128),
             (832, 384, 192, 384, 48, 128, 128)]


def googlenet_counts(aux_heads):
  parts = [conv(3, 3, 192, True)]
  for cin, n1, n3r, n3, n5r, n5, npool in GOOGLENET:
    parts += [conv(1, cin, n1, True), conv(1, cin, n3r, True),
              conv(3, n3r, n3, True), conv(1, cin, n5r, True),
              conv(3, n5r, n5, True), conv(3, n5, n5, True),
              conv(1, cin, npool, True)]
  parts.append(dense(1024, 10))
  for cin in ((512, 528) if aux_heads else ()):  # outputs of 4a and 4d
    parts += [conv(1, cin, 128), dense(4 * 4 * 128, 1024), dense(1024, 10)]
  return total(*parts)


def inception_small_counts(bn=True):
  parts, c = [conv(3, 3, 96, bn)], 96
  for a, b in [(32, 32), (32, 48), (80, None), (112, 48), (96, 64), (80, 80),
               (48, 96), (96, None), (176, 160), (176, 160)]:
    if b is None:  # Downsample(a): 3x3/2 conv of a channels + max-pool
      parts.append(conv(3, c, a, bn))
      c += a
    else:
      parts += [conv(1, c, a, bn), conv(3, c, b, bn)]
      c = a + b
  return total(*parts, dense(c, 10))


def bagnet_counts(patch):
  levels = {3: 0, 5: 1, 9: 2, 17: 3}[patch]
  parts, cin = [conv(3, 3, 64, True)], 64
  for stage, width in enumerate((64, 128, 256)):
    for i in range(2):
      spatial = i == 0 and stage < levels
      parts += [conv(3 if spatial else 1, cin, width, True),
                conv(1, width, width, True)]
      if spatial or cin != width:
        parts.append(conv(1, cin, width, True))
      cin = width
  return total(*parts, conv(1, 256, 10))


def vgg_dropout_counts():
  widths = [64, 64, 128, 128, 256, 256, 256, 256]
  parts = [conv(3, cin, cout, True) for cin, cout in zip([3] + widths, widths)]
  return total(*parts, dense(4 * 4 * 256, 1024), dense(1024, 1024),
               dense(1024, 10))


def cnn_counts(bn):
  return total(conv(5, 3, 64, bn), conv(5, 64, 64, bn), conv(5, 64, 128, bn),
               dense(4 * 4 * 128, 1000), dense(1000, 10))


HAND_COUNTS = [
    ("lenet5", {}, lambda: total(conv(5, 3, 6), conv(5, 6, 16),
                                 dense(400, 120), dense(120, 84),
                                 dense(84, 10))),
    ("lenet5", dict(bn=True), lambda: total(
        conv(5, 3, 6, True), conv(5, 6, 16, True), dense(400, 120, True),
        dense(120, 84, True), dense(84, 10))),
    ("alexnet", {}, lambda: total(conv(5, 3, 64), conv(5, 64, 64),
                                  dense(7 * 7 * 64, 384), dense(384, 192),
                                  dense(192, 10))),
    ("mlp", {}, lambda: total(dense(28 * 28 * 3, 512), dense(512, 10))),
    ("mlp", dict(mlp_units="512,512,512"), lambda: total(
        dense(28 * 28 * 3, 512), dense(512, 512), dense(512, 512),
        dense(512, 10))),
    ("cnn", {}, lambda: cnn_counts(False)),
    ("cnn", dict(bn=True), lambda: cnn_counts(True)),
    ("cnn_bn", {}, lambda: cnn_counts(True)),
    ("vgg_dropout", {}, vgg_dropout_counts),
    ("shallow_cnn", {}, lambda: total(
        conv(7, 3, 64, True), conv(3, 64, 128, True), conv(3, 128, 256, True),
        conv(3, 256, 256, True), dense(4 * 4 * 256, 512, True),
        dense(512, 10))),
    ("resnet", {}, lambda: resnet_counts(20)),
    ("resnet", dict(resnet_depth=110, stochastic_depth=True),
     lambda: resnet_counts(110)),
    ("resnet34", {}, resnet34_counts),
    ("googlenet", {}, lambda: googlenet_counts(False)),
    ("googlenet", dict(aux_heads=True), lambda: googlenet_counts(True)),
    ("inception_small", {}, inception_small_counts),
] + [("bagnet", dict(bagnet_patch=q), lambda q=q: bagnet_counts(q))
     for q in (3, 5, 9, 17)]


@functools.lru_cache(maxsize=None)
def model_counts(name, overrides):
  """(trainable, non-trainable) of a full-size model, built once."""
  model = build(name, **dict(overrides))
  size = lambda weights: sum(int(np.prod(w.shape)) for w in weights)
  return size(model.trainable_weights), size(model.non_trainable_weights)


@pytest.mark.parametrize("name, overrides, expected", HAND_COUNTS,
                         ids=[f"{n}-{'-'.join(map(str, o.values()))}"
                              for n, o, _ in HAND_COUNTS])
def test_parameter_counts_by_hand(name, overrides, expected):
  assert model_counts(name, tuple(overrides.items())) == expected()


# (name, overrides, published count, relative tolerance, which count): the
# issue's table; Zhang et al. 2017 Table 1 counts conv biases where our convs
# have BatchNorm's gamma and beta, hence the tolerance for inception_small.
PUBLISHED = [
    ("lenet5", {}, 62_006, 0.0, "all"),
    ("alexnet", {}, 1_387_786, 0.0, "all"),         # Zhang et al. Table 1
    ("mlp", {}, 1_209_866, 0.0, "all"),              # 1x512
    ("mlp", dict(mlp_units="512,512,512"), 1_735_178, 0.0, "all"),  # 3x512
    ("inception_small", {}, 1_649_402, 0.005, "trainable"),
    ("resnet", {}, 0.27e6, 0.02, "trainable"),       # He et al. Table 6
    ("resnet", dict(resnet_depth=110), 1.7e6, 0.02, "trainable"),
    ("resnet34", {}, 21.3e6, 0.005, "trainable"),
    ("googlenet", {}, 6.2e6, 0.01, "trainable"),
]


@pytest.mark.parametrize("name, overrides, published, tolerance, which",
                         PUBLISHED)
def test_published_parameter_counts(name, overrides, published, tolerance,
                                    which):
  trainable, non_trainable = model_counts(name, tuple(overrides.items()))
  count = trainable if which == "trainable" else trainable + non_trainable
  assert count == pytest.approx(published, rel=tolerance, abs=0)


def test_every_model_of_the_issue_is_registered_with_its_source():
  assert set(ISSUE_MODELS) <= set(models.MODELS)
  for name in ISSUE_MODELS:
    module = __import__(models.MODELS[name].__module__, fromlist=["_"])
    doc = module.__doc__.lower()
    assert name in doc and re.search(r"(19|20)\d\d", doc), name


# --- one step of the real train step, then a .keras round trip --------------

SMALL = dict(width_multiplier=0.125)
STEP_MODELS = [
    ("lenet5", dict(bn=True)), ("alexnet", {}),
    ("mlp", dict(mlp_units="64,64")), ("cnn", {}), ("cnn_bn", {}),
    ("vgg_dropout", {}), ("shallow_cnn", {}),
    ("resnet", dict(resnet_depth=8, stochastic_depth=True)),
    ("resnet34", {}), ("bagnet", dict(bagnet_patch=17)),
    ("inception_small", {}),  # googlenet: in the aux heads' test
]
RANDOM_MODELS = {"cnn", "cnn_bn", "vgg_dropout", "resnet"}


def seed_states(model):
  return {v.path: v.numpy().copy() for v in model.non_trainable_variables
          if "seed_generator" in v.path}


@pytest.mark.parametrize("name, overrides", STEP_MODELS,
                         ids=[n for n, _ in STEP_MODELS])
def test_one_train_step_and_keras_round_trip(name, overrides, tmp_path):
  model = build(name, **SMALL, **overrides)
  before = [v.numpy().copy() for v in model.trainable_variables]
  seeds_before = seed_states(model)
  assert bool(seeds_before) == (name in RANDOM_MODELS)
  step = trainer_lib.make_replica_step(
      model, keras.optimizers.SGD(0.1), global_batch=4, num_replicas=1,
      jit_compile=name in ("resnet", "bagnet"))
  labels = np.array([0, 1, 2, 3], "int64")
  sums = step((tf.constant(images()), tf.constant(labels))).numpy()
  assert np.isfinite(sums[0]) and sums[0] > 0 and sums[2] == 4
  assert 0 <= sums[1] <= 4
  changed = {v.path: not np.array_equal(b, v.numpy())
             for b, v in zip(before, model.trainable_variables)}
  gated = [l.name[:-len("_gate")] for l in model.layers
           if isinstance(l, stochastic_depth.ResidualGate)]
  for block in gated:  # a dropped block's branch: no gradient but decay's
    branch = {p: c for p, c in changed.items()
              if p.startswith(block + "_") and not p.endswith("kernel")}
    assert len(set(branch.values())) == 1, branch
    changed = {p: c for p, c in changed.items() if p not in branch}
  assert all(changed.values()), [p for p, c in changed.items() if not c]
  for path, state in seed_states(model).items():  # the RNGs moved on
    assert not np.array_equal(state, seeds_before[path]), path
  assert model.output.dtype == "float32"
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  x = images(3, seed=1)
  np.testing.assert_array_equal(loaded(x, training=False),
                                model(x, training=False))


def test_aux_heads_add_their_weighted_loss_in_training_only(tmp_path):
  """SGD at lr 1 without weight decay: a logits bias moves by -w * mean(
  softmax - onehot) of its head, w = 1 for the main head, 0.3 for the aux."""
  model = build("googlenet", aux_heads=True, weight_decay=0.0, **SMALL)
  x, labels = images(), np.array([0, 1, 2, 3], "int64")
  step_model, weights = models.training_outputs(model)
  assert weights == (0.3, 0.3)
  outputs, _ = step_model.stateless_call(  # what the step will compute
      [v.value for v in step_model.trainable_variables],
      [v.value for v in step_model.non_trainable_variables], x, training=True)
  heads = ("logits", "aux1_logits", "aux2_logits")
  biases = {h: model.get_layer(h).bias.numpy().copy() for h in heads}
  step = trainer_lib.make_replica_step(model, keras.optimizers.SGD(1.0), 4, 1,
                                       jit_compile=False)
  step((tf.constant(x), tf.constant(labels)))
  onehot = np.eye(10)[labels]
  for head, logits, weight in zip(heads, outputs, (1.0, 0.3, 0.3)):
    softmax = tf.nn.softmax(logits).numpy()
    expected = biases[head] - weight * (softmax - onehot).mean(axis=0)
    np.testing.assert_allclose(model.get_layer(head).bias.numpy(), expected,
                               atol=1e-5)
  # At inference the model's output is the main head's logits.
  main = keras.Model(model.inputs, model.get_layer("logits").output)
  np.testing.assert_array_equal(model(x), main(x))
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  np.testing.assert_array_equal(loaded(x, training=False),
                                model(x, training=False))
  assert models.training_outputs(loaded)[1] == (0.3, 0.3)


def test_a_training_run_with_stochastic_depth(tmp_path,
                                              make_synthetic_dataset):
  """The Trainer end to end: the gates' RNG states are checkpointed."""
  data_dir, _ = make_synthetic_dataset(num_train=32, num_test=16)
  config = config_lib.TrainConfig.from_flat(
      model="resnet", resnet_depth=8, stochastic_depth=True,
      model_dir=str(tmp_path / "run"), data_dir=data_dir, batch_size=16,
      epochs=1, width_multiplier=0.25, progress="none", xla=False)
  trainer = trainer_lib.Trainer(config, tf.distribute.get_strategy())
  gates = [l.seed_generator.state for l in trainer.model.layers
           if isinstance(l, stochastic_depth.ResidualGate)]
  assert len(gates) == 3
  checkpointed = {id(v) for v in trainer.checkpoint.rng_states}
  assert all(id(state) in checkpointed for state in gates)
  code = trainer_lib.train_and_evaluate(config, tf.distribute.get_strategy(),
                                        log=lambda _: None)
  (row,) = run_dir_lib.RunDir(config.run.model_dir).read_metrics()
  assert code == 0 and row["epoch"] == 1 and np.isfinite(row["train_loss"])


# --- stochastic depth (Huang et al. 2016, Section 3) ------------------------


def test_survival_probabilities_fall_linearly_to_one_half():
  model = build("resnet", resnet_depth=20, stochastic_depth=True, **SMALL)
  gates = [l for l in model.layers
           if isinstance(l, stochastic_depth.ResidualGate)]
  blocks = 9  # 3 stages of n = 3
  assert [g.survival for g in gates] == pytest.approx(
      [1 - l / blocks * 0.5 for l in range(1, blocks + 1)])
  assert gates[-1].survival == 0.5
  plain = build("resnet", resnet_depth=20, **SMALL)
  assert not any(isinstance(l, stochastic_depth.ResidualGate)
                 for l in plain.layers)


def test_gate_scales_at_test_time_and_drops_with_its_probability():
  gate = stochastic_depth.ResidualGate(0.7, seed=5)
  rng = np.random.RandomState(0)
  shortcut, residual = (rng.normal(size=(2, 4, 4, 3)).astype("float32")
                        for _ in range(2))
  np.testing.assert_allclose(gate([shortcut, residual], training=False),
                             shortcut + 0.7 * residual, rtol=1e-6)
  kept = []
  for _ in range(600):
    out = gate([shortcut, residual], training=True).numpy()
    is_kept = np.allclose(out, shortcut + residual)
    assert is_kept or np.array_equal(out, shortcut)  # the whole block
    kept.append(is_kept)
  sigma = np.sqrt(0.7 * 0.3 / len(kept))
  assert abs(np.mean(kept) - 0.7) < 4 * sigma


def test_gate_draws_differ_per_step_under_stateless_call():
  model = build("resnet", resnet_depth=8, stochastic_depth=True, **SMALL)
  trainable = [v.value for v in model.trainable_variables]
  non_trainable = [v.value for v in model.non_trainable_variables]
  call = tf.function(lambda t, n: model.stateless_call(
      t, n, images(), training=True), jit_compile=True)
  outputs = []
  for _ in range(8):
    logits, non_trainable = call(trainable, non_trainable)
    outputs.append(logits.numpy())
  # BN batch statistics are the same every call: only the gates differ.
  assert len({o.tobytes() for o in outputs}) > 1


# --- BagNet's receptive field (Brendel & Bethge 2019) -----------------------


@pytest.mark.parametrize("patch, jump", [(3, 1), (5, 2), (9, 4), (17, 8)])
def test_bagnet_location_logits_see_exactly_their_patch(patch, jump):
  """Location u of the (32 / jump)^2 grid sees rows jump*u - 1 ...
  jump*u - 1 + patch - 1 (3x3 stem: u-1..u+1; a stride-2 3x3 conv maps
  [a, b] to [2a, 2b + 2]), and so for columns."""
  model = build("bagnet", bagnet_patch=patch, **SMALL)
  per_location = keras.Model(model.inputs,
                             model.get_layer("patch_logits").output)
  x = images(1)
  grid = per_location(x).numpy()
  assert grid.shape == (1, 32 // jump, 32 // jump, 10)
  np.testing.assert_allclose(grid.mean(axis=(1, 2)), model(x), rtol=1e-5,
                             atol=1e-4)
  u = v = grid.shape[1] // 2
  rows = slice(jump * u - 1, jump * u - 1 + patch)
  cols = slice(jump * v - 1, jump * v - 1 + patch)
  outside = images(1, seed=7) * 3
  outside[:, rows, cols] = x[:, rows, cols]
  np.testing.assert_allclose(per_location(outside)[0, u, v], grid[0, u, v],
                             rtol=1e-5, atol=1e-5)
  for r in (rows.start, rows.stop - 1):
    for c in (cols.start, cols.stop - 1):
      corner = x.copy()
      corner[0, r, c] += 5.0
      assert np.abs(per_location(corner)[0, u, v] - grid[0, u, v]).max() > 1e-4


# --- flags ------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (dict(model="resnet", resnet_depth=21), "--resnet_depth must be 6n"),
    (dict(model="bagnet", bagnet_patch=7), "--bagnet_patch=7 is not one of"),
    (dict(model="cnn", dropout=1.0), "--dropout must be < 1"),
    (dict(model="cnn", dropout=-0.1), "--dropout must be >= 0"),
    (dict(model="mlp", mlp_units="512,x"), "--mlp_units"),
    (dict(model="lenet5", stochastic_depth=True),
     "--stochastic_depth applies to --model=resnet"),
    (dict(model="resnet", aux_heads=True),
     "--aux_heads applies to --model=googlenet"),
])
def test_bad_zoo_flags_are_one_line_errors(overrides, message):
  with pytest.raises(UserError, match=message):
    config_lib.TrainConfig.from_flat(**overrides)


def test_mlp_units_flag_parses_widths():
  config = config_lib.TrainConfig.from_flat(model="mlp", mlp_units="512, 256")
  assert config.model.mlp_widths == (512, 256)


@pytest.mark.parametrize("name, overrides", [
    ("bagnet", dict(bagnet_patch=5)), ("googlenet", dict(aux_heads=True)),
    ("resnet", dict(resnet_depth=8, stochastic_depth=True)),
    ("alexnet", {})])
def test_logits_are_float32_under_mixed_precision(name, overrides):
  keras.mixed_precision.set_dtype_policy("mixed_float16")
  try:
    model = build(name, **SMALL, **overrides)
    for training in (False, True):
      assert model(images(), training=training).dtype == tf.float32
  finally:
    keras.mixed_precision.set_dtype_policy("float32")


# --- the zoo's flagfiles: their headers' recipes are what their flags do ----

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO_DIR = os.path.join(REPO_ROOT, "flags", "zoo")
ZOO_MODELS = tuple(n for n in ISSUE_MODELS if n != "vgglike")  # the studies'
RECIPE_LINE = re.compile(r"#   ([a-z][a-z ]*): (.+)")
NUMBER = r"\d+(?:\.\d+)?(?:e-?\d+)?"


def zoo_header(name):
  """(the flagfile's leading comment as text, {recipe key: value})."""
  lines = []
  with open(os.path.join(ZOO_DIR, f"{name}.cfg")) as f:
    for line in f:
      if not line.startswith("#"):
        break
      lines.append(line.rstrip("\n"))
  recipe = {}
  for line in lines:
    match = RECIPE_LINE.fullmatch(line)
    if match:
      assert match.group(1) not in recipe, (name, line)
      recipe[match.group(1)] = match.group(2)
  return "\n".join(lines), recipe


def parse(pattern, text, name, key):
  match = re.fullmatch(pattern, text)
  assert match, f"{name}.cfg: cannot read '#   {key}: {text}'"
  return match


def stated_lr(recipe, name, steps, steps_per_epoch):
  """The lr of every step in `steps` (0-based) as the header words it."""
  optimizer = parse(rf"(?:SGD, (?:Nesterov )?momentum {NUMBER}|Adam)(?:, then "
                    rf"SGD with momentum {NUMBER} from epoch (\d+))?",
                    recipe["optimizer"], name, "optimizer")
  lr = parse(rf"({NUMBER})(?:, then ({NUMBER}) \(SGD\))?", recipe["lr"],
             name, "lr")
  switch = int(optimizer.group(1) or 0)
  assert bool(switch) == bool(lr.group(2)), name  # both say the SGD phase
  epoch = steps // steps_per_epoch + 1  # 1-based, as the trainer counts
  base = np.where((epoch >= switch) & (switch > 0),
                  float(lr.group(2) or 0), float(lr.group(1)))
  text, t = recipe["schedule"], steps / steps_per_epoch  # epochs done
  if text == "constant":
    return base
  if match := re.fullmatch(rf"x({NUMBER}) after epochs ([\d, and]+)", text):
    drops = [int(e) for e in re.findall(r"\d+", match.group(2))]
    return base * float(match.group(1)) ** sum(t >= e for e in drops)
  if match := re.fullmatch(rf"x({NUMBER}) every (\d+) epochs", text):
    return base * float(match.group(1)) ** np.floor(t / int(match.group(2)))
  if match := re.fullmatch(rf"x({NUMBER}) per epoch, smoothly", text):
    return base * float(match.group(1)) ** t
  if match := re.fullmatch(r"cosine to 0 over (\d+) epochs", text):
    return base * (1 + np.cos(np.pi * np.minimum(t / int(match.group(1)),
                                                 1))) / 2
  raise AssertionError(f"{name}.cfg: cannot read '#   schedule: {text}'")


def encoded_lr(config, steps, steps_per_epoch):
  """The lr of every step in `steps` as the trainer builds it from `config`
  (tfcifar.trainer.Trainer: the schedule, scaled by sgd_lr/lr from epoch
  --switch_to_sgd_epoch on)."""
  o = config.optim
  schedule = schedules.make_schedule(
      o.lr_schedule, o.lr, steps_per_epoch, decay_epochs=o.lr_decay_epochs,
      decay_factor=o.lr_decay_factor, warmup_epochs=o.warmup_epochs,
      total_epochs=o.epochs)
  lr = schedules.lr_series(schedule, 0, len(steps))
  if o.switch_to_sgd_epoch:
    sgd = schedules.lr_series(
        schedules.scaled(schedule, (o.sgd_lr or o.lr) / o.lr), 0, len(steps))
    first = (o.switch_to_sgd_epoch - 1) * steps_per_epoch
    lr = np.where(steps >= first, sgd, lr)
  return lr


def test_every_zoo_model_has_one_flagfile():
  names = sorted(f[:-len(".cfg")] for f in os.listdir(ZOO_DIR)
                 if f.endswith(".cfg"))
  assert names == sorted(ZOO_MODELS)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_flagfile_is_a_valid_config_with_the_recipe_of_its_header(
    name, monkeypatch):
  """The trainer's own flags read the file (every bound and rule checked),
  and each `#   key: value` line of the header is what the flags do: the lr
  of every step of the run as the header words the schedule, the optimizer,
  epochs, batch, weight decay, input, augmentation, smoothing, dropout."""
  monkeypatch.chdir(REPO_ROOT)
  config = config_lib.from_flagfile(f"flags/zoo/{name}.cfg")
  text, recipe = zoo_header(name)
  assert text.startswith(f"# {name} -- "), name
  assert re.search(r"^# Published: ", text, re.M), name
  assert re.search(r"^# Recipe \(", text, re.M), name
  assert config.model.name == name
  o, d, m = config.optim, config.data, config.model
  required = {"optimizer", "lr", "schedule", "epochs", "batch",
              "weight decay", "input", "augmentation"}
  assert required <= set(recipe) <= required | {"label smoothing", "dropout"}

  optimizer = recipe["optimizer"]
  momentum = re.search(rf"momentum ({NUMBER})", optimizer)
  expected = ("adam" if optimizer.startswith("Adam") else
              "nesterov" if "Nesterov" in optimizer else "momentum")
  assert o.optimizer == expected, name
  if momentum:
    assert o.momentum == float(momentum.group(1)), name
  switch = re.search(r"from epoch (\d+)", optimizer)
  assert o.switch_to_sgd_epoch == (int(switch.group(1)) if switch else 0)

  assert o.epochs == int(parse(r"(\d+)", recipe["epochs"], name,
                               "epochs").group(1))
  assert o.batch_size == int(parse(r"(\d+)", recipe["batch"], name,
                                   "batch").group(1))
  assert o.warmup_epochs == 0  # no header states a warmup
  steps_per_epoch = cifar10.FULL_SPLIT_SIZES["train"] // o.batch_size
  steps = np.arange(o.epochs * steps_per_epoch)
  stated = stated_lr(recipe, name, steps, steps_per_epoch)
  np.testing.assert_allclose(  # float32 schedules: 1e-5 of the largest lr
      encoded_lr(config, steps, steps_per_epoch), stated, rtol=1e-5,
      atol=1e-5 * stated.max(),
      err_msg=f"{name}.cfg: the flags' lr schedule is not the header's")

  assert m.weight_decay == float(parse(NUMBER, recipe["weight decay"], name,
                                       "weight decay").group(0))
  assert d.preprocess == parse(r".*\(--preprocess=(\w+)\)", recipe["input"],
                               name, "input").group(1)
  augmentation = recipe["augmentation"]
  assert augmentation in ("none", "crop + flip"), name
  assert (d.augment, d.cutout, d.autoaugment) == (
      augmentation == "crop + flip", 0, False), name
  assert o.label_smoothing == float(recipe.get("label smoothing", 0))
  if "dropout" in recipe:
    assert m.dropout == float(recipe["dropout"]), name


def test_a_header_that_misstates_its_schedule_fails_the_comparison():
  """The comparison can fail: resnet's flags against a header that drops
  the lr one epoch later, and against one that decays every epoch."""
  config = config_lib.from_flagfile(os.path.join(ZOO_DIR, "resnet.cfg"))
  _, recipe = zoo_header("resnet")
  steps = np.arange(config.optim.epochs * 390)
  encoded = encoded_lr(config, steps, 390)
  np.testing.assert_allclose(encoded, stated_lr(recipe, "resnet", steps, 390))
  for schedule in ("x0.1 after epochs 83 and 123", "x0.95 per epoch, smoothly"):
    wrong = stated_lr(dict(recipe, schedule=schedule), "resnet", steps, 390)
    assert not np.allclose(encoded, wrong), schedule


def test_readme_zoo_table_agrees_with_the_flagfiles():
  """Every zoo model is a row of README's table, and every number of its
  'published' column is in the flagfile's header."""
  with open(os.path.join(REPO_ROOT, "README.md")) as f:
    readme = f.read()
  table = readme.split("## The model zoo", 1)[1].split("\n\n")
  rows = next(part for part in table if part.startswith("| `--model`"))
  published = {}
  for row in rows.splitlines()[2:]:
    cells = [c.strip() for c in row.strip("|").split("|")]
    for name in re.findall(r"`(\w+)`", cells[0]):
      published[name] = cells[-1]
  assert set(ZOO_MODELS) | {"vgglike"} == set(published)
  for name in ZOO_MODELS:
    text, _ = zoo_header(name)
    for number in re.findall(r"\d+\.\d+%", published[name]):
      assert number in text, (name, number)


@pytest.mark.parametrize("line, message", [
    ("--lr_decay_epochs=82,123", "--lr_decay_epochs needs --lr_schedule"),
    ("--resnet_depth=75", "--resnet_depth must be 6n"),
    ("--no_such_flag=1", "no_such_flag"),
])
def test_a_bad_flagfile_is_a_user_error(line, message, tmp_path):
  path = tmp_path / "bad.cfg"
  path.write_text(f"# a zoo-like flagfile\n--model=resnet\n{line}\n")
  with pytest.raises(UserError, match=message):
    config_lib.from_flagfile(str(path))
