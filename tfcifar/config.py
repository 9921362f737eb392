"""Every hyperparameter of a training run: one frozen, nested config.

  TrainConfig(model=ModelConfig, data=DataConfig, optim=OptimConfig,
              run=RunConfig)

Each field is its command-line flag: `option(default, help, low=..., ...)`
puts the help text, bounds and choices in the field's metadata,
`define_flags()` defines one absl flag per field and `from_flags()` reads them
back. Each rule is checked once, here, when a section is built: a bad value is
a one-line UserError naming its flag. A new flag is one field (plus its uses).

This module imports no TensorFlow; the model and corruption names are looked
up in their registries only when a config is checked.
"""

import dataclasses
import os
from typing import Optional

from tfcifar.errors import UserError


def option(default, help, *, low=None, above=None, high=None, choices=None,
           flag=None, runtime=False, path=False):
  """A config field with its flag's metadata.

  Args:
    default: the default value (its type is the flag's type).
    help: the flag's help text.
    low, above, high: value >= low, value > above, value <= high.
    choices: allowed values, or a function returning them (a registry).
    flag: the flag name (default: the field name); False: not a flag.
    runtime: how the run runs, not what it computes: may change on resume.
    path: a file or directory: `~` and $VARIABLES are expanded.
  """
  return dataclasses.field(default=default, metadata=dict(
      help=help, low=low, above=above, high=high, choices=choices,
      flag=flag, runtime=runtime, path=path))


def expand_path(path):
  """`path` with `~` and $VARIABLES expanded (the shell does not after '=')."""
  return os.path.expandvars(os.path.expanduser(path)) if path else path


def define_path_flag(name, default, help_text, multi=False):
  """A string flag (or a repeatable one, `multi`) whose values have `~` and
  $VARIABLES expanded, for every path flag of every command."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  class PathParser(flags.ArgumentParser):
    def parse(self, argument):
      return expand_path(argument)

  if multi:
    flags.DEFINE_multi(PathParser(), flags.ArgumentSerializer(), name,
                       default, help_text)
  else:
    flags.DEFINE(PathParser(), name, default, help_text,
                 serializer=flags.ArgumentSerializer())


def flag_name(f):
  return f.metadata.get("flag") or f.name


def is_flag(f):
  return f.metadata.get("flag") is not False


def _choices(f):
  choices = f.metadata.get("choices")
  return choices() if callable(choices) else choices


def _bound_problems(f, value):
  """One message per bound or choice of field `f` that `value` breaks."""
  m, name = f.metadata, flag_name(f)
  choices = _choices(f)
  if choices is not None and value not in choices:
    names = ", ".join(str(c) for c in choices if c is not None)
    yield f"--{name}={value} is not one of {names}"
  for key, ok, text in (("low", lambda v, b: v >= b, ">="),
                        ("above", lambda v, b: v > b, ">"),
                        ("high", lambda v, b: v <= b, "<=")):
    if m.get(key) is not None and not ok(value, m[key]):  # nan fails too
      yield f"--{name} must be {text} {m[key]:g}, got {value}"


def check_values(section, **values):
  """Checks `values` against the bounds of `section`'s fields (UserError).

  For code that takes the same values outside a config (e.g. a layer).
  """
  fields = {f.name: f for f in dataclasses.fields(section)}
  for name, value in values.items():
    for problem in _bound_problems(fields[name], value):
      raise UserError(problem)


class _Section:
  """Expands paths, checks every field's bounds, then the section's own
  `_rules()`."""

  def __post_init__(self):
    for f in dataclasses.fields(self):
      if f.metadata["path"]:
        object.__setattr__(self, f.name, expand_path(getattr(self, f.name)))
      for problem in _bound_problems(f, getattr(self, f.name)):
        raise UserError(problem)
    for problem in self._rules():
      raise UserError(problem)

  def _rules(self):
    return ()


# tfcifar.data.preprocess.PREPROCESSORS (checked by tests/test_config.py).
PREPROCESSES = ("standardize", "unit", "mean", "gcn", "zca", "gcn_zca")


def _model_names():
  from tfcifar import models  # pylint: disable=g-import-not-at-top
  return sorted(models.MODELS)


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
  """Architecture and regularisation: what `models.build_model` needs."""
  name: str = option("vgglike", "Model name (tfcifar.models.MODELS).",
                     choices=_model_names, flag="model")
  bn: bool = option(False, "BatchNorm before every hidden ReLU.")
  bn_momentum: float = option(0.99, "Momentum of BatchNorm's moving mean and "
                              "variance (used at test time): 0.99 as in TF1 "
                              "and Keras; 0.9 is PyTorch's (its momentum=0.1)"
                              ". Lower converges in fewer steps.", low=0,
                              high=1)
  noise: bool = option(False, "Noisy BatchNorm (needs --bn), Santurkar et al. "
                       "2018, Algorithm 1: after BN, a <- s*a + m with a "
                       "per-step channel shift mu and scale sigma and a "
                       "per-activation jitter.")
  noise_mean: float = option(0.5, "n_mu (>= 0): channel shifts mu ~ U(-n_mu, "
                             "n_mu), new every step.", low=0)
  noise_std: float = option(1.25, "n_sigma (>= 1): channel scales sigma ~ "
                            "U(1, n_sigma), new every step.", low=1)
  noise_mean_jitter: float = option(0.1, "r_mu (>= 0): per-activation shift "
                                    "m ~ U(mu - r_mu, mu + r_mu).", low=0)
  noise_std_jitter: float = option(0.1, "r_sigma (>= 0): per-activation "
                                   "scale s ~ N(sigma, r_sigma^2).", low=0)
  width_multiplier: float = option(1.0, "Scales every layer width (> 0).",
                                   above=0)
  vgg_stages: str = option("vgg16", "vgg11|vgg13|vgg16|vgg19 or a spec such "
                           "as 64,64,M,128,128,M (M = max-pool).")
  sync_bn: bool = option(True, "BatchNorm batch statistics over the global "
                         "batch (all replicas), so that a BN network computes "
                         "the same on 1 or N replicas; --nosync_bn: each "
                         "replica's share (faster; the step keeps XLA). Noisy "
                         "BN's noise stays per replica either way.")
  weight_decay: float = option(1e-4, "L2 on conv/dense kernels: loss += wd * "
                               "sum(w**2) / 2.", low=0)
  dropout: float = option(0.5, "Rate of the dropout layers of the models "
                          "that have them (cnn, cnn_bn, vgg_dropout: its "
                          "per-stage dropout is half of it, googlenet); 0 "
                          "removes them. The other models have no dropout.",
                          low=0)
  aux_heads: bool = option(False, "googlenet: the two auxiliary classifiers, "
                           "loss weight 0.3, training only.")
  resnet_depth: int = option(20, "resnet: depth 6n+2 (20, 32, 44, 56, 74, "
                             "110).", low=8)
  stochastic_depth: bool = option(False, "resnet: stochastic depth (Huang et "
                                  "al. 2016), survival probability falling "
                                  "linearly from 1 to 0.5.")
  bagnet_patch: int = option(9, "bagnet: receptive field of the per-location "
                             "logits, pixels.", choices=(3, 5, 9, 17))
  mlp_units: str = option("512", "mlp: hidden widths, e.g. 512 or "
                          "512,512,512.")
  dense_units: tuple = option((512, 512), "Hidden dense widths.", flag=False)
  num_classes: int = option(10, "Number of logits.", low=1, flag=False)
  input_shape: tuple = option((32, 32, 3), "Image shape, channels last.",
                              flag=False)

  def __post_init__(self):
    # Lists from JSON become tuples, so the config stays hashable.
    object.__setattr__(self, "dense_units", tuple(self.dense_units))
    object.__setattr__(self, "input_shape", tuple(self.input_shape))
    super().__post_init__()

  def _rules(self):
    if self.noise and not self.bn:
      yield "--noise needs --bn: noisy BatchNorm adds its noise after BatchNorm"
    if any(int(u) < 1 for u in self.dense_units):
      yield f"dense_units must be positive, got {self.dense_units}"
    if not self.dropout < 1:
      yield f"--dropout must be < 1, got {self.dropout}"
    if (self.resnet_depth - 2) % 6:
      yield (f"--resnet_depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), "
             f"got {self.resnet_depth}")
    tokens = [t.strip() for t in str(self.mlp_units).split(",")]
    if not all(t.isdigit() and int(t) > 0 for t in tokens):
      yield (f"--mlp_units must be comma-separated positive widths such as "
             f"512,512,512, got {self.mlp_units!r}")
    for flag, is_set, names in MODEL_SPECIFIC_FLAGS:
      if is_set(self) and self.name not in names:
        yield f"--{flag} applies to --model={'/'.join(names)}, not {self.name}"

  @property
  def mlp_widths(self):
    """--mlp_units as a tuple of widths."""
    return tuple(int(t) for t in str(self.mlp_units).split(","))


# Flags that only some models read: (flag, is set, the models that read it).
MODEL_SPECIFIC_FLAGS = (
    ("aux_heads", lambda c: c.aux_heads, ("googlenet",)),
    ("stochastic_depth", lambda c: c.stochastic_depth, ("resnet",)),
)


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
  """Which images, how they are changed, how many."""
  data_dir: str = option("", "Converted CIFAR-10 TFRecords. Default: the "
                         "standard location if converted data is there, else "
                         "the bundled sample.", runtime=True, path=True)
  augment: bool = option(False, "Reflect-pad-4 random crop 32 and "
                         "horizontal flip.")
  corrupt: Optional[str] = option(None, "Dataset corruption: labels, "
                                  "shuffled_pixels, random_pixels or "
                                  "gaussian.")
  corrupt_prob: float = option(0.0, "Probability that a train label is "
                               "randomised (--corrupt=labels).")
  preprocess: str = option(
      "standardize", "Input preprocessing (tfcifar/data/preprocess.py): "
      "standardize = per-channel train mean/std (the study); unit = [0, 1]; "
      "mean = [0, 1] minus the mean train RGB value; gcn = global contrast "
      "normalisation per image (s=1, lambda=10, eps=1e-8); zca = ZCA "
      "whitening fitted on the train split (eps=0.01 on [0, 1] values); "
      "gcn_zca = both. Fitted statistics are cached beside the data and "
      "recorded in <model_dir>/preprocess.npz.", choices=PREPROCESSES)
  normalization: Optional[str] = option(
      None, "Deprecated alias of --preprocess (kept so that old flagfiles "
      "load; folded into --preprocess).", choices=(None, "standardize",
                                                   "unit"), runtime=True)
  autoaugment: bool = option(False, "AutoAugment, CIFAR-10 policy (Cubuk et "
                             "al. 2019; torchvision's "
                             "AutoAugmentPolicy.CIFAR10), after crop+flip.")
  cutout: int = option(0, "Cutout (DeVries & Taylor 2017): zero one SIZE x "
                       "SIZE square per train image (clipped at the border), "
                       "after normalisation; 0 = off.", low=0, high=32)
  max_train_examples: int = option(0, "Use the first N train images (0 = "
                                   "all).", low=0)
  max_test_examples: int = option(0, "Use the first N test images (0 = all).",
                                  low=0)

  def __post_init__(self):
    object.__setattr__(self, "corrupt", self.corrupt or None)
    # --normalization is a deprecated alias: fold it into --preprocess.
    if self.normalization is not None:
      if self.preprocess not in ("standardize", self.normalization):
        raise UserError(f"--normalization={self.normalization} (deprecated) "
                        f"contradicts --preprocess={self.preprocess}; keep "
                        "--preprocess only")
      object.__setattr__(self, "preprocess", self.normalization)
      object.__setattr__(self, "normalization", None)
    super().__post_init__()

  def _rules(self):
    from tfcifar.data import corruptions  # pylint: disable=g-import-not-at-top
    corruptions.validate_corruption(self.corrupt, self.corrupt_prob)
    return ()


@dataclasses.dataclass(frozen=True)
class OptimConfig(_Section):
  """The optimisation: plain SGD at a constant lr by default (the study's)."""
  optimizer: str = option("sgd", "Optimizer (the study: plain SGD). adamw "
                          "decays the weights by --weight_decay decoupled "
                          "from the loss (Loshchilov & Hutter 2019), instead "
                          "of the L2 term.",
                          choices=("sgd", "momentum", "nesterov", "adam",
                                   "adamw"))
  lr: float = option(0.05, "Learning rate (> 0; the initial one with a "
                     "--lr_schedule).", above=0)
  momentum: float = option(0.9, "Momentum for --optimizer=momentum|nesterov "
                           "(and the SGD phase of --switch_to_sgd_epoch).",
                           low=0)
  lr_schedule: str = option("constant", "Learning-rate schedule per step "
                            "(tfcifar/schedules.py).",
                            choices=("constant", "step", "cosine",
                                     "exponential"))
  lr_decay_epochs: str = option("", "step: decay every N epochs ('100') or "
                                "at these epochs ('81,122'); cosine: the "
                                "decay length (default --epochs); "
                                "exponential: by --lr_decay_factor every N "
                                "epochs (default 1).")
  lr_decay_factor: float = option(0.1, "Learning-rate multiplier per decay "
                                  "(step, exponential; > 0).", above=0)
  warmup_epochs: int = option(0, "Linear warmup over this many epochs "
                              "(Goyal et al. 2017), 0 = none.", low=0)
  switch_to_sgd_epoch: int = option(0, "With adam/adamw: from this epoch on, "
                                    "SGD with --momentum and a new optimizer "
                                    "state (0 = never).", low=0)
  sgd_lr: float = option(0.0, "Learning rate of the SGD phase (the "
                         "--lr_schedule scaled by sgd_lr/lr); 0 = the --lr "
                         "schedule itself.", low=0)
  label_smoothing: float = option(0.0, "Targets (1-eps)*one_hot + eps/10 "
                                  "(Szegedy et al. 2016, Sec. 7), in [0, 1). "
                                  "train_loss reports this smoothed loss (the "
                                  "one minimised); test_loss stays plain "
                                  "cross-entropy.", low=0)
  batch_size: int = option(128, "Global batch size (images per step over all "
                           "replicas).", above=0)
  epochs: int = option(50, "Epochs to train.", above=0, runtime=True)
  seed: int = option(0, "Seed of init, data order, corruption, augmentation "
                     "and noise.")

  def _rules(self):
    if self.switch_to_sgd_epoch and self.optimizer not in ("adam", "adamw"):
      yield ("--switch_to_sgd_epoch switches from --optimizer=adam or adamw "
             "to SGD")
    if not self.label_smoothing < 1:
      yield f"--label_smoothing must be < 1, got {self.label_smoothing}"
    # The schedule's own checks (--lr_decay_epochs against --lr_schedule).
    from tfcifar import schedules  # pylint: disable=g-import-not-at-top
    schedules.make_schedule(self.lr_schedule, self.lr, 1,
                            decay_epochs=self.lr_decay_epochs,
                            total_epochs=self.epochs)


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class RunConfig(_Section):
  """How a run runs: where, on what devices, what it logs."""
  model_dir: str = option("", "Run directory. Default: "
                          "runs/<model>[_bn][_noise]_lr<lr>.", runtime=True,
                          path=True)
  strategy: str = option("default", "tf.distribute strategy (multi_worker "
                         "reads TF_CONFIG).", runtime=True,
                         choices=("default", "mirrored", "multi_worker"))
  num_cpu_devices: int = option(2, "Logical CPU devices for "
                                "--strategy=mirrored on a machine without "
                                "GPU.", above=0, runtime=True)
  precision: str = option("float32", "Compute dtype policy: mixed_float16 "
                          "(dynamic loss scaling) or mixed_bfloat16 (none).",
                          choices=PRECISIONS)
  mixed_precision: bool = option(False, "Alias of --precision=mixed_float16 "
                                 "(folded into --precision).")
  xla: Optional[bool] = option(None, "XLA-compile the per-replica step and "
                               "the input pipeline's pixel maths. Default "
                               "(auto): on with GPUs, off on CPUs (XLA's CPU "
                               "convolutions lose to oneDNN's); --xla/--noxla "
                               "force it.", runtime=True)
  histograms: bool = option(False, "Log histograms of post-BN (post-noise) "
                            "activations every epoch, and their percentiles "
                            "to activations.csv.", runtime=True)
  steps_per_loop: int = option(20, "Train steps per tf.function call.",
                               above=0, runtime=True)
  progress: str = option("auto", "Progress bar (auto: a bar on a terminal, "
                         "else log lines).", runtime=True,
                         choices=("auto", "bar", "log", "none"))
  keep_checkpoints: int = option(2, "Checkpoints kept in "
                                 "<model_dir>/checkpoints.", runtime=True,
                                 above=0)

  def __post_init__(self):
    # --mixed_precision is an alias: fold it into --precision.
    if self.mixed_precision:
      if self.precision not in ("float32", "mixed_float16"):
        raise UserError(f"--mixed_precision means --precision=mixed_float16, "
                        f"not --precision={self.precision}")
      object.__setattr__(self, "precision", "mixed_float16")
      object.__setattr__(self, "mixed_precision", False)
    super().__post_init__()


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
            "run": RunConfig}


def flag_fields():
  """{flag name: (section name, field)} of every flag, in definition order."""
  return {flag_name(f): (section, f) for section, cls in SECTIONS.items()
          for f in dataclasses.fields(cls) if is_flag(f)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """A training run: four checked sections."""
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
  run: RunConfig = dataclasses.field(default_factory=RunConfig)

  @classmethod
  def from_flat(cls, **values):
    """A config from {flag name: value}; unset flags keep their defaults."""
    return cls().replace(**values) if values else cls()

  def replace(self, **changes):
    """A copy with the flags in `changes` ({flag name: value}) changed."""
    fields = flag_fields()
    unknown = sorted(set(changes) - set(fields))
    if unknown:
      raise UserError(f"unknown config fields: {', '.join(unknown)}")
    by_section = {}
    for name, value in changes.items():
      section, f = fields[name]
      by_section.setdefault(section, {})[f.name] = value
    return dataclasses.replace(self, **{
        section: dataclasses.replace(getattr(self, section), **values)
        for section, values in by_section.items()})

  def to_dict(self):
    """{flag name: value}: config.json, flags.txt and the HParams."""
    return {name: getattr(getattr(self, section), f.name)
            for name, (section, f) in flag_fields().items()}

  def identity(self):
    """The flags that define what the run computes (compared on resume)."""
    fields = flag_fields()
    runtime = {k for k, (_, f) in fields.items() if f.metadata["runtime"]}
    # A cosine schedule without --lr_decay_epochs decays over --epochs, which
    # is then part of what the run computes.
    if self.optim.lr_schedule == "cosine" and not self.optim.lr_decay_epochs:
      runtime.discard("epochs")
    return {k: v for k, v in self.to_dict().items() if k not in runtime}

  def flags_text(self):
    """The flags of this config, loadable with --flagfile."""
    return "\n".join(["# Resolved flags of this run: python -m tfcifar.train "
                      "--flagfile=<this file>",
                      *flag_words(self.to_dict())]) + "\n"


def flag_words(values):
  """{flag name: value} as command-line words: --name / --noname for
  booleans, --name=value otherwise; None values are left out."""
  return [(f"--{name}" if value else f"--no{name}")
          if isinstance(value, bool) else f"--{name}={value}"
          for name, value in values.items() if value is not None]


# --- the flags ----------------------------------------------------------------

_DEFINE = {bool: "DEFINE_boolean", int: "DEFINE_integer",
           float: "DEFINE_float", str: "DEFINE_string"}


def define_flags(flag_values=None):
  """Defines one absl flag per config field (bounds are checked by the config,
  so that a config built in Python is checked the same way)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  for name, (_, f) in flag_fields().items():
    kind = {Optional[bool]: bool}.get(f.type, f.type)  # None: auto
    kind = kind if kind in _DEFINE else str  # Optional[str]
    help_text = f.metadata["help"]
    choices = f.metadata["choices"]
    if isinstance(choices, tuple):
      help_text += (" One of: "
                    f"{', '.join(str(c) for c in choices if c is not None)}.")
    getattr(flags, _DEFINE[kind])(name, f.default, help_text,
                                  flag_values=flag_values)


def from_flagfile(path, *args):
  """The TrainConfig of flagfile `path` (then `args`, e.g. "--epochs=3"),
  read by the trainer's own flags, as `python -m tfcifar.train
  --flagfile=path` would (a nested --flagfile opens relative to the current
  directory). A bad flag or value raises UserError."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  try:
    flag_values(["tfcifar", f"--flagfile={path}", *args])
  except flags.Error as e:
    raise UserError(f"{path}: {e}") from e
  return from_flags(flag_values)


def from_flags(flag_values=None):
  """The TrainConfig of the parsed flags."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  return TrainConfig.from_flat(**{name: flag_values[name].value
                                  for name in flag_fields()})
