"""ModelConfig: everything a model builder needs, as one frozen dataclass.

Field names match the trainer's flags (`--bn`, `--vgg_stages`, ...), so a bad
value is reported as a one-line UserError naming its flag.
"""

import dataclasses

from tfcifar.errors import UserError
from tfcifar.models import noisy_batchnorm


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture and regularisation of a model.

  Attributes:
    name: registered model name (see `tfcifar.models.MODELS`).
    bn: BatchNorm between every conv/hidden dense layer and its ReLU.
    noise: make every BatchNorm a `NoisyBatchNormalization` (needs bn).
    noise_mean: n_mu of noisy BN: channel shifts mu_j ~ U(-n_mu, n_mu).
    noise_std: n_sigma of noisy BN: channel scales sigma_j ~ U(1, n_sigma).
    noise_mean_jitter: r_mu: per-activation shifts U(mu_j - r_mu, mu_j + r_mu).
    noise_std_jitter: r_sigma: per-activation scales N(sigma_j, r_sigma^2).
    width_multiplier: scales every conv/hidden dense width (at least 1 unit).
    vgg_stages: vgg11/vgg13/vgg16/vgg19 or a spec like "64,64,M,128,M".
    dense_units: widths of the hidden dense layers (before scaling).
    weight_decay: L2 coefficient; the loss is weight_decay * sum(w^2) / 2 over
      conv and dense kernels.
    num_classes: number of logits.
    input_shape: image shape, channels last.
    dropout: rate of the dropout layers of the models that have them (cnn,
      cnn_bn, vgg_dropout, googlenet); 0 removes them. Others ignore it.
    aux_heads: googlenet's two auxiliary classifiers (loss weight 0.3,
      training only).
    resnet_depth: depth 6n+2 of the CIFAR ResNet (n blocks per stage).
    stochastic_depth: resnet blocks survive with a probability falling
      linearly from 1 to 0.5 (Huang et al. 2016); scaled at test time.
    bagnet_patch: receptive field of bagnet's per-location logits (pixels).
    mlp_units: hidden widths of the mlp.
  """

  name: str = "vgglike"
  bn: bool = False
  noise: bool = False
  noise_mean: float = noisy_batchnorm.DEFAULT_NOISE_MEAN
  noise_std: float = noisy_batchnorm.DEFAULT_NOISE_STD
  noise_mean_jitter: float = noisy_batchnorm.DEFAULT_NOISE_MEAN_JITTER
  noise_std_jitter: float = noisy_batchnorm.DEFAULT_NOISE_STD_JITTER
  width_multiplier: float = 1.0
  vgg_stages: str = "vgg16"
  dense_units: tuple = (512, 512)
  weight_decay: float = 1e-4
  num_classes: int = 10
  input_shape: tuple = (32, 32, 3)
  dropout: float = 0.5
  aux_heads: bool = False
  resnet_depth: int = 20
  stochastic_depth: bool = False
  bagnet_patch: int = 9
  mlp_units: tuple = (512,)

  def __post_init__(self):
    # Lists from JSON/flags become tuples, so the config stays hashable.
    object.__setattr__(self, "dense_units", tuple(self.dense_units))
    object.__setattr__(self, "input_shape", tuple(self.input_shape))
    object.__setattr__(self, "mlp_units", tuple(self.mlp_units))
    for problem in _problems(self):
      raise UserError(problem)


def _problems(cfg):
  """One message per invalid field, naming its flag."""
  if cfg.noise and not cfg.bn:
    yield "--noise needs --bn: noisy BatchNorm adds its noise after BatchNorm"
  if cfg.noise_mean < 0:
    yield f"--noise_mean must be >= 0, got {cfg.noise_mean}"
  if cfg.noise_std < 1:
    yield f"--noise_std must be >= 1, got {cfg.noise_std}"
  if cfg.noise_mean_jitter < 0:
    yield f"--noise_mean_jitter must be >= 0, got {cfg.noise_mean_jitter}"
  if cfg.noise_std_jitter < 0:
    yield f"--noise_std_jitter must be >= 0, got {cfg.noise_std_jitter}"
  if not cfg.width_multiplier > 0:
    yield f"--width_multiplier must be > 0, got {cfg.width_multiplier}"
  if cfg.weight_decay < 0:
    yield f"--weight_decay must be >= 0, got {cfg.weight_decay}"
  if any(int(u) < 1 for u in cfg.dense_units):
    yield f"dense_units must be positive, got {cfg.dense_units}"
  if cfg.num_classes < 1:
    yield f"--num_classes must be >= 1, got {cfg.num_classes}"
  yield from _zoo_problems(cfg)


BAGNET_PATCHES = (3, 5, 9, 17)
# Flags that only some models read: (flag, is set, the models that read it).
MODEL_SPECIFIC = (
    ("--aux_heads", lambda c: c.aux_heads, ("googlenet",)),
    ("--stochastic_depth", lambda c: c.stochastic_depth, ("resnet",)),
)


def _zoo_problems(cfg):
  """The zoo's flags: ranges, and model-specific flags on other models."""
  if not 0 <= cfg.dropout < 1:
    yield f"--dropout must be in [0, 1), got {cfg.dropout}"
  if cfg.resnet_depth < 8 or (cfg.resnet_depth - 2) % 6:
    yield (f"--resnet_depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), "
           f"got {cfg.resnet_depth}")
  if cfg.bagnet_patch not in BAGNET_PATCHES:
    yield (f"--bagnet_patch must be one of "
           f"{', '.join(map(str, BAGNET_PATCHES))}, got {cfg.bagnet_patch}")
  if not cfg.mlp_units or any(int(u) < 1 for u in cfg.mlp_units):
    yield f"--mlp_units must be positive widths, got {cfg.mlp_units}"
  for flag, is_set, names in MODEL_SPECIFIC:
    if is_set(cfg) and cfg.name not in names:
      yield f"{flag} applies to --model={'/'.join(names)}, not {cfg.name}"
