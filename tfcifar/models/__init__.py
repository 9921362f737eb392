"""Models: a registry of CIFAR-10 classifiers and the helpers the trainer uses.

  cfg = models.ModelConfig(name="vgglike", bn=True, noise=False, ...)
  model = models.build_model(cfg)          # functional keras.Model, logits
  sum(model.losses)                        # weight_decay * sum(w^2) / 2
  models.post_bn_activations_model(model)  # {block: pre-ReLU activations}

Builders register with `@models.register_model("name")`. Importing this
package registers the zoo (`sequential`, `resnet`, `inception`) and the
custom layers (`NoisyBatchNormalization`, ...) for `keras.saving.load_model`.
`models.training_outputs(model)` gives the trainer a model's auxiliary logits
(GoogLeNet's `--aux_heads`) and their loss weights.
"""

from tfcifar.models import inception  # noqa: F401  (registers the zoo)
from tfcifar.models import resnet  # noqa: F401
from tfcifar.models import sequential  # noqa: F401
from tfcifar.models import vgglike  # noqa: F401  (registers "vgglike")
from tfcifar.config import ModelConfig
from tfcifar.models.auxiliary import training_outputs
from tfcifar.models.noisy_batchnorm import add_channel_noise
from tfcifar.models.noisy_batchnorm import NoisyBatchNormalization
from tfcifar.models.probes import normalization_layers
from tfcifar.models.probes import post_bn_activations_model
from tfcifar.models.registry import build_model
from tfcifar.models.registry import MODELS
from tfcifar.models.registry import register_model

__all__ = [
    "MODELS", "ModelConfig", "NoisyBatchNormalization", "add_channel_noise",
    "build_model", "normalization_layers", "post_bn_activations_model",
    "register_model", "training_outputs",
]
