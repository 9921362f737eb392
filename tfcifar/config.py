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
  # Data.
  data_dir: str = ""                # TFRecords; "" = standard location or sample
  augment: bool = False             # reflect-pad-4 random crop 32 + h-flip
  corrupt: Optional[str] = None     # labels|shuffled_pixels|random_pixels|gaussian
  corrupt_prob: float = 0.0         # probability for --corrupt=labels, in [0, 1]
  preprocess: str = "standardize"   # standardize|unit|mean|gcn|zca|gcn_zca
  autoaugment: bool = False         # AutoAugment CIFAR-10 policy after crop+flip
  cutout: int = 0                   # Cutout square side (pixels), 0 = none
  max_train_examples: int = 0       # 0 = the whole train split (images)
  max_test_examples: int = 0        # 0 = the whole test split (images)
  # Optimisation.
  optimizer: str = "sgd"            # sgd | momentum | nesterov | adam | adamw
  lr: float = 0.05                  # (initial) learning rate
  momentum: float = 0.9             # for --optimizer=momentum|nesterov
  lr_schedule: str = "constant"     # constant | step | cosine | exponential
  lr_decay_epochs: str = ""         # "100" (every 100 epochs) or "81,122"
  lr_decay_factor: float = 0.1      # lr multiplier per decay
  warmup_epochs: int = 0            # linear warmup (epochs), 0 = none
  switch_to_sgd_epoch: int = 0      # from this epoch on SGD (new state); 0 = never
  sgd_lr: float = 0.0               # lr after the switch; 0 = the --lr schedule
  label_smoothing: float = 0.0      # eps: targets (1-eps) one-hot + eps/10
  dropout: float = 0.0              # dropout rate of models that have dropout
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
    """The fields that define what the run computes (compared on resume).

    A cosine schedule without --lr_decay_epochs decays over --epochs, which
    is then part of what the run computes.
    """
    runtime = RUNTIME_FIELDS
    if self.lr_schedule == "cosine" and not self.lr_decay_epochs:
      runtime = runtime - {"epochs"}
    return {k: v for k, v in self.to_dict().items() if k not in runtime}

  def model_config(self):
    """The `tfcifar.models.ModelConfig` of this run."""
    from tfcifar import models  # pylint: disable=g-import-not-at-top
    return models.ModelConfig(
        name=self.model, bn=self.bn, noise=self.noise,
        noise_mean=self.noise_mean, noise_std=self.noise_std,
        noise_mean_jitter=self.noise_mean_jitter,
        noise_std_jitter=self.noise_std_jitter,
        width_multiplier=self.width_multiplier, vgg_stages=self.vgg_stages,
        # AdamW decays the weights itself (decoupled), not through the loss.
        weight_decay=0.0 if self.optimizer == "adamw" else self.weight_decay,
        dropout=self.dropout)


def field_names():
  return [f.name for f in dataclasses.fields(TrainConfig)]
