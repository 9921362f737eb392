"""VGGLike (Simonyan & Zisserman 2015) for CIFAR-10, with optional BatchNorm.

3x3 'same' conv layers in stages separated by 2x2 max-pools (the VGG conv
stacks below, or any spec like "64,64,M,128,M"), then flatten, hidden dense
layers (512, 512) and a dense layer of logits:

  [conv3x3 -> (BN | noisy BN)? -> ReLU]*  with max-pools at the 'M's
  flatten -> [dense -> (BN | noisy BN)? -> ReLU] x 2 -> dense (float32 logits)

With `bn`, BatchNorm sits between every conv/hidden dense layer and its ReLU,
and that layer has no bias; the logits layer never has BN nor a nonlinearity.
Widths are scaled by `width_multiplier`. Kernels carry L2 weight decay.

The network is built by a loop over a flat layer plan; each kind of entry has
its block function in `BLOCKS`.
"""

import dataclasses
import math

import keras

from tfcifar.errors import UserError
from tfcifar.models import batchnorm
from tfcifar.models import noisy_batchnorm
from tfcifar.models import probes
from tfcifar.models import regularization
from tfcifar.models.registry import register_model

POOL = "M"
VGG_STAGES = {
    "vgg11": "64,M,128,M,256,256,M,512,512,M,512,512,M",
    "vgg13": "64,64,M,128,128,M,256,256,M,512,512,M,512,512,M",
    "vgg16": "64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M",
    "vgg19": ("64,64,M,128,128,M,256,256,256,256,M,512,512,512,512,M,"
              "512,512,512,512,M"),
}
# ReLU layers: He init keeps the activation scale through 16 layers without BN.
RELU_KERNEL_INIT = "he_normal"


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One entry of the layer plan: kind in BLOCKS, width (units), name."""
  kind: str
  width: int = 0
  name: str = ""


def parse_stages(spec, image_size=32):
  """'vgg16' or '64,64,M,128,M' -> (64, 64, 'M', 128, 'M'); UserError if bad."""
  text = VGG_STAGES.get(spec.strip().lower(), spec)
  tokens = [t.strip() for t in text.split(",")]
  stages = []
  for token in tokens:
    if token.upper() == POOL:
      stages.append(POOL)
    elif token.isdigit() and int(token) > 0:
      stages.append(int(token))
    else:
      raise UserError(
          f"--vgg_stages: bad entry {token!r} in {spec!r}; expected one of "
          f"{', '.join(VGG_STAGES)} or comma-separated widths and M "
          "(max-pool), e.g. '64,64,M,128,128,M'")
  if not any(s != POOL for s in stages):
    raise UserError(f"--vgg_stages: {spec!r} has no conv layer")
  max_pools = int(math.log2(image_size))
  if stages.count(POOL) > max_pools:
    raise UserError(f"--vgg_stages: {spec!r} has {stages.count(POOL)} "
                    f"max-pools, at most {max_pools} fit a {image_size}px "
                    "image")
  return tuple(stages)


def scaled_width(width, multiplier):
  """width * multiplier rounded, at least 1."""
  return max(1, int(round(width * multiplier)))


def layer_plan(cfg):
  """The flat list of LayerSpec of a VGGLike network for `cfg`."""
  plan = []
  stage, index = 1, 1
  for entry in parse_stages(cfg.vgg_stages, min(cfg.input_shape[:2])):
    if entry == POOL:
      plan.append(LayerSpec("pool", name=f"pool{stage}"))
      stage, index = stage + 1, 1
    else:
      plan.append(LayerSpec("conv", scaled_width(entry, cfg.width_multiplier),
                            f"conv{stage}_{index}"))
      index += 1
  plan.append(LayerSpec("flatten", name="flatten"))
  for i, units in enumerate(cfg.dense_units, start=1):
    plan.append(LayerSpec("dense", scaled_width(units, cfg.width_multiplier),
                          f"fc{i}"))
  plan.append(LayerSpec("logits", cfg.num_classes, "logits"))
  return plan


def normalization(cfg, name):
  """BatchNorm or noisy BatchNorm for a `bn` config."""
  if cfg.noise:
    return noisy_batchnorm.NoisyBatchNormalization(
        noise_mean=cfg.noise_mean, noise_std=cfg.noise_std,
        noise_mean_jitter=cfg.noise_mean_jitter,
        noise_std_jitter=cfg.noise_std_jitter, momentum=cfg.bn_momentum,
        synchronized=cfg.sync_bn, name=name)
  return batchnorm.BatchNormalization(momentum=cfg.bn_momentum,
                                      synchronized=cfg.sync_bn, name=name)


def normalize_and_activate(x, cfg, name):
  """(BN ->) ReLU after the linear layer `name`."""
  if cfg.bn:
    x = normalization(cfg, f"{name}_bn")(x)
  return keras.layers.ReLU(name=f"{name}{probes.RELU_SUFFIX}")(x)


def conv_block(x, spec, cfg):
  x = keras.layers.Conv2D(
      spec.width, 3, padding="same", use_bias=not cfg.bn,
      kernel_initializer=RELU_KERNEL_INIT,
      kernel_regularizer=regularization.kernel_regularizer(cfg.weight_decay),
      name=spec.name)(x)
  return normalize_and_activate(x, cfg, spec.name)


def pool_block(x, spec, cfg):
  del cfg
  return keras.layers.MaxPooling2D(2, name=spec.name)(x)


def flatten_block(x, spec, cfg):
  del cfg
  return keras.layers.Flatten(name=spec.name)(x)


def dense_block(x, spec, cfg):
  x = keras.layers.Dense(
      spec.width, use_bias=not cfg.bn, kernel_initializer=RELU_KERNEL_INIT,
      kernel_regularizer=regularization.kernel_regularizer(cfg.weight_decay),
      name=spec.name)(x)
  return normalize_and_activate(x, cfg, spec.name)


def logits_block(x, spec, cfg):
  # float32 even under the mixed_float16 policy: the loss needs it.
  return keras.layers.Dense(
      spec.width, dtype="float32",
      kernel_regularizer=regularization.kernel_regularizer(cfg.weight_decay),
      name=spec.name)(x)


BLOCKS = {
    "conv": conv_block,
    "pool": pool_block,
    "flatten": flatten_block,
    "dense": dense_block,
    "logits": logits_block,
}


@register_model("vgglike")
def build_vgglike(cfg):
  """The functional VGGLike model: float32 images [B, H, W, 3] -> logits."""
  images = keras.Input(shape=cfg.input_shape, dtype="float32", name="images")
  x = images
  for spec in layer_plan(cfg):
    x = BLOCKS[spec.kind](x, spec, cfg)
  suffix = ("_noisy_bn" if cfg.noise else "_bn") if cfg.bn else ""
  return keras.Model(images, x, name=f"vgglike{suffix}")
