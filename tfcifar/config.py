"""Every hyperparameter of a training run, in one frozen place, with units.

Flags are defined once (`tfcifar/train.py`), read once at the edge and turned
into a `TrainConfig`, which is passed down. Nothing below the edge reads flags.
"""

import dataclasses
from typing import Optional

# Fields that may change when a run is resumed in the same model_dir: how it
# runs, not what it computes.
RUNTIME_FIELDS = frozenset({
    "epochs", "data_dir", "model_dir", "strategy", "num_cpu_devices", "xla",
    "histograms", "steps_per_loop", "progress", "keep_checkpoints",
})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """A training run. Defaults are the study's (plain SGD, constant lr)."""
  # Model.
  model: str = "vgglike"            # a name in tfcifar.models.MODELS
  bn: bool = False                  # BatchNorm before every hidden ReLU
  noise: bool = False               # NoisyBatchNormalization instead of BN
  noise_mean: float = 0.5           # n_mu: mu_j ~ U(-n_mu, n_mu), per step/channel
  noise_std: float = 1.25           # n_sigma: sigma_j ~ U(1, n_sigma), per step/channel
  noise_mean_jitter: float = 0.1    # r_mu: m_ij ~ U(mu_j - r_mu, mu_j + r_mu)
  noise_std_jitter: float = 0.1     # r_sigma: s_ij ~ N(sigma_j, r_sigma^2)
  width_multiplier: float = 1.0     # scales every layer width
  vgg_stages: str = "vgg16"         # vgg11|13|16|19 or "64,64,M,128,M,..."
  weight_decay: float = 1e-4        # loss += weight_decay * sum(w**2) / 2
  dropout: float = 0.5              # rate of the dropout layers (models with them)
  aux_heads: bool = False           # googlenet: auxiliary classifiers, weight 0.3
  resnet_depth: int = 20            # resnet: 6n+2 layers
  stochastic_depth: bool = False    # resnet: survival 1 -> 0.5 (Huang et al. 2016)
  bagnet_patch: int = 9             # bagnet: receptive field, pixels (3|5|9|17)
  mlp_units: str = "512"            # mlp: hidden widths, e.g. "512,512,512"
  # Data.
  data_dir: str = ""                # TFRecords; "" = standard location or sample
  augment: bool = False             # reflect-pad-4 random crop 32 + h-flip
  corrupt: Optional[str] = None     # labels|shuffled_pixels|random_pixels|gaussian
  corrupt_prob: float = 0.0         # probability for --corrupt=labels, in [0, 1]
  normalization: str = "standardize"  # standardize (train mean/std) | unit ([0,1])
  max_train_examples: int = 0       # 0 = the whole train split (images)
  max_test_examples: int = 0        # 0 = the whole test split (images)
  # Optimisation.
  optimizer: str = "sgd"            # sgd | momentum | adam
  lr: float = 0.05                  # constant learning rate
  momentum: float = 0.9             # for --optimizer=momentum
  batch_size: int = 128             # global batch (images per step, all replicas)
  epochs: int = 50                  # passes over the train split
  seed: int = 0                     # init, shuffling, corruption, augmentation, noise
  # Execution.
  model_dir: str = ""               # run directory (metrics, events, checkpoints)
  strategy: str = "default"         # default | mirrored | multi_worker
  num_cpu_devices: int = 2          # logical CPU devices for mirrored without GPUs
  mixed_precision: bool = False     # mixed_float16 with dynamic loss scaling
  xla: bool = True                  # jit_compile the per-replica step
  histograms: bool = False          # post-BN activation histograms per epoch
  steps_per_loop: int = 20          # train steps per tf.function call (steps)
  progress: str = "auto"            # auto | bar | log | none
  keep_checkpoints: int = 2         # checkpoints kept in model_dir/checkpoints

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    return dataclasses.asdict(self)

  def identity(self):
    """The fields that define what the run computes (compared on resume)."""
    return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

  def model_config(self):
    """The `tfcifar.models.ModelConfig` of this run."""
    from tfcifar import models  # pylint: disable=g-import-not-at-top
    return models.ModelConfig(
        name=self.model, bn=self.bn, noise=self.noise,
        noise_mean=self.noise_mean, noise_std=self.noise_std,
        noise_mean_jitter=self.noise_mean_jitter,
        noise_std_jitter=self.noise_std_jitter,
        width_multiplier=self.width_multiplier, vgg_stages=self.vgg_stages,
        weight_decay=self.weight_decay, dropout=self.dropout,
        aux_heads=self.aux_heads, resnet_depth=self.resnet_depth,
        stochastic_depth=self.stochastic_depth,
        bagnet_patch=self.bagnet_patch,
        mlp_units=parse_units(self.mlp_units, "--mlp_units"))


def parse_units(text, flag):
  """'512,512' -> (512, 512); UserError naming `flag` if not widths."""
  from tfcifar.errors import UserError  # pylint: disable=g-import-not-at-top
  tokens = [t.strip() for t in str(text).split(",")]
  if not all(t.isdigit() and int(t) > 0 for t in tokens):
    raise UserError(f"{flag} must be comma-separated positive widths such as "
                    f"512,512,512, got {text!r}")
  return tuple(int(t) for t in tokens)


def field_names():
  return [f.name for f in dataclasses.fields(TrainConfig)]
