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
    dropout: dropout rate for the models registered with dropout=True (a
      hook: vgglike has no dropout layer and refuses a rate > 0).
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
  dropout: float = 0.0

  def __post_init__(self):
    # Lists from JSON/flags become tuples, so the config stays hashable.
    object.__setattr__(self, "dense_units", tuple(self.dense_units))
    object.__setattr__(self, "input_shape", tuple(self.input_shape))
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
  if not 0 <= cfg.dropout < 1:
    yield f"--dropout must be in [0, 1), got {cfg.dropout}"
  if cfg.num_classes < 1:
    yield f"--num_classes must be >= 1, got {cfg.num_classes}"
