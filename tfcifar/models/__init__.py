"""Models: a registry of CIFAR-10 classifiers and the helpers the trainer uses.

  cfg = models.ModelConfig(name="vgglike", bn=True, noise=False, ...)
  model = models.build_model(cfg)          # functional keras.Model, logits
  models.weight_decay_loss(model)          # == sum(model.losses)
  models.post_bn_activations_model(model)  # {block: pre-ReLU activations}

Builders register with `@models.register_model("name")`. Importing this
package registers `NoisyBatchNormalization` for `keras.saving.load_model`.
"""

from tfcifar.models import vgglike  # noqa: F401  (registers "vgglike")
from tfcifar.models.config import ModelConfig
from tfcifar.models.noisy_batchnorm import add_channel_noise
from tfcifar.models.noisy_batchnorm import NoisyBatchNormalization
from tfcifar.models.probes import normalization_layers
from tfcifar.models.probes import post_bn_activations_model
from tfcifar.models.registry import build_model
from tfcifar.models.registry import check_dropout
from tfcifar.models.registry import MODELS
from tfcifar.models.registry import register_model
from tfcifar.models.regularization import weight_decay_loss

__all__ = [
    "MODELS", "ModelConfig", "NoisyBatchNormalization", "add_channel_noise",
    "build_model", "check_dropout", "normalization_layers",
    "post_bn_activations_model",
    "register_model", "weight_decay_loss",
]
