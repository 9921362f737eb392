"""Residual networks of the zoo, each a plan of stem, residual blocks, head.

  resnet    He et al. 2015 (Section 4.2, the CIFAR-10 ResNets; the chainer
            note's): conv3x3x16, then 3 stages of n basic blocks (two 3x3
            convs with BatchNorm) of 16/32/64 channels, the first block of
            stages 2 and 3 with stride 2, global average pooling, FC 10;
            depth 6n+2 (`--resnet_depth`: 20 -> 0.27M parameters, 110 ->
            1.7M). The downsampling shortcut is "option A": a stride-2 2x2
            average pool and zero-padded channels (no parameters).
            `--stochastic_depth`: Huang et al. 2016 (Section 3, linear decay
            to p_L = 0.5, residuals scaled by p_l at test time), see
            `stochastic_depth`.
  resnet34  He et al. 2015 (Table 1, 34-layer) for 32x32 images, as the
            overview note gives it: a 3x3 stem of 64 channels (no max-pool),
            basic blocks [3, 4, 6, 3] of 64/128/256/512 channels, projection
            shortcuts (1x1 conv + BN, "option B") where the shape changes,
            global average pooling, FC 10: 21.3M parameters.
  bagnet    BagNet (Brendel & Bethge 2019, Section 2 and Appendix A) at CIFAR
            scale: a ResNet whose 3x3 convs are replaced by 1x1 convs except
            for the stem and the first conv of the first k stages (k = 0, 1,
            2, 3 for `--bagnet_patch` = 3, 5, 9, 17), those 3x3 convs having
            stride 2, as in the paper. Every output location thus sees one
            q x q patch (q = 3 + 2 + 4 + 8, 'same' padding: clipped at the
            border), a 1x1 conv `patch_logits` gives that patch's class
            evidence, and the image logits `logits` are their spatial mean.
            Blocks are pairs (3x3 or 1x1, 1x1) rather than the paper's
            bottlenecks; 3 stages of 64/128/256 channels, 2 blocks each.

All of them always have BatchNorm (`--bn` changes nothing; `--noise` with
`--bn` makes it noisy BatchNorm).
"""

import dataclasses

import keras
from keras import ops

from tfcifar.models import blocks
from tfcifar.models import probes
from tfcifar.models import stochastic_depth
from tfcifar.models.blocks import Layer
from tfcifar.models.registry import register_model

RESNET_WIDTHS = (16, 32, 64)
RESNET34_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))
BAGNET_WIDTHS = (64, 128, 256)
BAGNET_BLOCKS_PER_STAGE = 2
BAGNET_LEVELS = {3: 0, 5: 1, 9: 2, 17: 3}  # patch -> stages with a 3x3 conv


@dataclasses.dataclass(frozen=True)
class Residual:
  """A basic block: conv(kernels[0], stride) -> BN -> ReLU -> conv(kernels[1])
  -> BN, added to the shortcut, ReLU. shortcut: "pad" (option A) or
  "projection" (option B) where the shape changes. survival < 1: stochastic
  depth."""
  name: str
  width: int
  stride: int = 1
  kernels: tuple = (3, 3)
  shortcut: str = "projection"
  survival: float = 1.0
  kind: str = "residual"


@keras.saving.register_keras_serializable(package="tfcifar")
class ZeroPadChannels(keras.layers.Layer):
  """Appends zero channels up to `channels` (He et al.'s option A)."""

  def __init__(self, channels, **kwargs):
    super().__init__(**kwargs)
    self.channels = int(channels)

  def call(self, inputs):
    extra = self.channels - inputs.shape[-1]
    return ops.pad(inputs, [[0, 0]] * (len(inputs.shape) - 1) + [[0, extra]])

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.channels,)

  def get_config(self):
    return {**super().get_config(), "channels": self.channels}


def pad_shortcut(x, block, channels, cfg):
  del cfg
  if block.stride > 1:
    x = keras.layers.AveragePooling2D(block.stride, block.stride,
                                      name=f"{block.name}_shortcut_pool")(x)
  return ZeroPadChannels(channels, name=f"{block.name}_shortcut_pad")(x)


def projection_shortcut(x, block, channels, cfg):
  del channels
  return blocks.conv(x, cfg, block.width, 1, f"{block.name}_shortcut",
                     block.stride, bn=True, relu=False)


SHORTCUTS = {"pad": pad_shortcut, "projection": projection_shortcut}


def residual_block(x, block, cfg):
  channels = blocks.width(cfg, block.width)
  y = blocks.conv(x, cfg, block.width, block.kernels[0], f"{block.name}_conv1",
                  block.stride, bn=True)
  y = blocks.conv(y, cfg, block.width, block.kernels[1], f"{block.name}_conv2",
                  bn=True, relu=False)
  shortcut = x
  if block.stride > 1 or x.shape[-1] != channels:
    shortcut = SHORTCUTS[block.shortcut](x, block, channels, cfg)
  if block.survival < 1:
    y = stochastic_depth.ResidualGate(block.survival,
                                      name=f"{block.name}_gate")([shortcut, y])
  else:
    y = keras.layers.Add(name=f"{block.name}_add")([shortcut, y])
  return keras.layers.ReLU(name=f"{block.name}{probes.RELU_SUFFIX}")(y)


def patch_logits_block(x, layer, cfg):
  return keras.layers.Conv2D(
      cfg.num_classes, 1, dtype="float32",
      kernel_regularizer=blocks.decay(cfg), name=layer.name)(x)


def location_mean_block(x, layer, cfg):
  del cfg
  return keras.layers.GlobalAveragePooling2D(dtype="float32",
                                             name=layer.name)(x)


RESIDUAL_BLOCKS = {**blocks.BLOCKS, "residual": residual_block,
                   "patch_logits": patch_logits_block,
                   "location_mean": location_mean_block}
CLASSIFIER = [Layer("global_pool", "global_pool"), Layer("logits", "logits")]


def resnet_plan(cfg):
  n = (cfg.resnet_depth - 2) // 6
  survival = (stochastic_depth.survival_probabilities(3 * n)
              if cfg.stochastic_depth else [1.0] * (3 * n))
  plan = [Layer("conv", "conv1", RESNET_WIDTHS[0], bn=True)]
  for stage, filters in enumerate(RESNET_WIDTHS):
    for i in range(n):
      plan.append(Residual(
          f"stage{stage + 1}_block{i + 1}", filters,
          stride=2 if stage > 0 and i == 0 else 1, shortcut="pad",
          survival=survival[stage * n + i]))
  return plan + CLASSIFIER


def resnet34_plan(cfg):
  del cfg
  plan = [Layer("conv", "conv1", 64, bn=True)]
  for stage, (filters, count) in enumerate(RESNET34_STAGES):
    plan += [Residual(f"stage{stage + 1}_block{i + 1}", filters,
                      stride=2 if stage > 0 and i == 0 else 1)
             for i in range(count)]
  return plan + CLASSIFIER


def bagnet_plan(cfg):
  levels = BAGNET_LEVELS[cfg.bagnet_patch]
  plan = [Layer("conv", "conv1", BAGNET_WIDTHS[0], bn=True)]
  for stage, filters in enumerate(BAGNET_WIDTHS):
    for i in range(BAGNET_BLOCKS_PER_STAGE):
      spatial = i == 0 and stage < levels
      plan.append(Residual(f"stage{stage + 1}_block{i + 1}", filters,
                           stride=2 if spatial else 1,
                           kernels=(3 if spatial else 1, 1)))
  return plan + [Layer("patch_logits", "patch_logits"),
                 Layer("location_mean", "logits")]


PLANS = {
    "resnet": (resnet_plan, lambda c: f"resnet{c.resnet_depth}"
               f"{'_sd' if c.stochastic_depth else ''}"),
    "resnet34": (resnet34_plan, lambda c: "resnet34"),
    "bagnet": (bagnet_plan, lambda c: f"bagnet{c.bagnet_patch}"),
}


def _register(name, plan, model_name):
  @register_model(name)
  def build(cfg):
    return blocks.build_plan(plan(cfg), cfg, model_name(cfg),
                             RESIDUAL_BLOCKS)

  build.__doc__ = f"The functional {name} model (see the module docstring)."
  return build


for _name, (_plan, _model_name) in PLANS.items():
  _register(_name, _plan, _model_name)
