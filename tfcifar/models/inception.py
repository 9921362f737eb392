"""Inception networks of the zoo, each a plan of Inception modules.

  googlenet        GoogLeNet (Szegedy et al. 2015, Section 5, Table 1) for
                   32x32 images (as the CIFAR GoogLeNet commonly trained, e.g.
                   kuangliu/pytorch-cifar): a 3x3x192 stem instead of the
                   ImageNet stem, the 9 Inception modules 3a-5b of Table 1
                   (1x1, 1x1 -> 3x3, 1x1 -> "5x5", 3x3 max-pool -> 1x1
                   branches, concatenated) with 3x3/2 max-pools after 3b and
                   4e, global average pooling, dropout (`--dropout`; the
                   paper's 0.4) and FC 10. Every conv has BatchNorm, and the
                   5x5 branch is two 3x3 convs (the factorisation of Szegedy
                   et al. 2016, Section 3.1): ~6.2M parameters.
                   `--aux_heads` adds the two auxiliary classifiers of
                   Section 5 on 4a and 4d (5x5/3 average pool, 1x1x128 conv,
                   FC 1024, dropout 0.7, FC 10; 4x4 maps on our 16x16 input as
                   on the paper's 14x14), whose cross-entropy is added with
                   weight 0.3 in training only (see `auxiliary`).
  inception_small  Zhang et al. 2017 (Appendix A, Figure 3): on the central
                   28x28 crop, conv3x3x96, Inception(32, 32), Inception(32,
                   48), Downsample(80), Inception(112, 48), Inception(96, 64),
                   Inception(80, 80), Inception(48, 96), Downsample(96),
                   Inception(176, 160), Inception(176, 160), 7x7 global mean
                   pooling, FC 10; Inception(a, b) concatenates a 1x1xa and a
                   3x3xb conv, Downsample(b) a 3x3/2xb conv and a 3x3/2
                   max-pool; every conv has BatchNorm. 1,649,402 parameters
                   in Table 1 (conv biases instead of BatchNorm's gamma and
                   beta: ours has 1,651,114 trainable).

Both always have BatchNorm (`--bn` changes nothing).
"""

import dataclasses

import keras

from tfcifar.models import auxiliary
from tfcifar.models import blocks
from tfcifar.models.blocks import Layer
from tfcifar.models.registry import register_model

# Table 1 of Szegedy et al. 2015: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj.
GOOGLENET_MODULES = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    "pool3",
    ("4a", (192, 96, 208, 16, 48, 64)),
    "aux1",
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    "aux2",
    ("4e", (256, 160, 320, 32, 128, 128)),
    "pool4",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)
AUX_LOSS_WEIGHT = 0.3   # Szegedy et al. 2015, Section 5
AUX_DROPOUT = 0.7
# Zhang et al. 2017, Figure 3: ("inception", 1x1, 3x3) or ("downsample", 3x3).
SMALL_MODULES = (("inception", 32, 32), ("inception", 32, 48),
                 ("downsample", 80), ("inception", 112, 48),
                 ("inception", 96, 64), ("inception", 80, 80),
                 ("inception", 48, 96), ("downsample", 96),
                 ("inception", 176, 160), ("inception", 176, 160))


@dataclasses.dataclass(frozen=True)
class Module:
  """An Inception module: kind in the blocks, its widths, its name."""
  kind: str
  name: str
  widths: tuple = ()


def conv(x, cfg, filters, kernel, name, stride=1):
  return blocks.conv(x, cfg, filters, kernel, name, stride, bn=True)


def googlenet_module(x, module, cfg):
  n1, n3r, n3, n5r, n5, npool = module.widths
  name = f"inception{module.name}"
  b1 = conv(x, cfg, n1, 1, f"{name}_1x1")
  b3 = conv(conv(x, cfg, n3r, 1, f"{name}_3x3_reduce"), cfg, n3, 3,
            f"{name}_3x3")
  b5 = conv(x, cfg, n5r, 1, f"{name}_5x5_reduce")
  b5 = conv(conv(b5, cfg, n5, 3, f"{name}_5x5a"), cfg, n5, 3, f"{name}_5x5b")
  pool = keras.layers.MaxPooling2D(3, 1, padding="same",
                                   name=f"{name}_pool")(x)
  bp = conv(pool, cfg, npool, 1, f"{name}_pool_proj")
  return keras.layers.Concatenate(name=name)([b1, b3, b5, bp])


def small_inception(x, module, cfg):
  n1, n3 = module.widths
  b1 = conv(x, cfg, n1, 1, f"{module.name}_1x1")
  b3 = conv(x, cfg, n3, 3, f"{module.name}_3x3")
  return keras.layers.Concatenate(name=module.name)([b1, b3])


def small_downsample(x, module, cfg):
  (n3,) = module.widths
  b3 = conv(x, cfg, n3, 3, f"{module.name}_3x3", stride=2)
  pool = keras.layers.MaxPooling2D(3, 2, padding="same",
                                   name=f"{module.name}_pool")(x)
  return keras.layers.Concatenate(name=module.name)([b3, pool])


def aux_head(x, name, cfg):
  """Szegedy et al. 2015, Section 5: the auxiliary classifier's logits."""
  x = keras.layers.AveragePooling2D(5, 3, name=f"{name}_pool")(x)
  x = blocks.conv(x, cfg, 128, 1, f"{name}_conv", bn=False)
  x = keras.layers.Flatten(name=f"{name}_flatten")(x)
  x = blocks.dense(x, cfg, 1024, f"{name}_fc", bn=False)
  x = blocks.dropout(x, AUX_DROPOUT, f"{name}_dropout")
  return blocks.logits(x, cfg, f"{name}_logits")


def googlenet_plan(cfg):
  plan = [Layer("conv", "conv1", 192, bn=True)]
  for entry in GOOGLENET_MODULES:
    if isinstance(entry, tuple):
      plan.append(Module("googlenet_module", *entry))
    elif entry.startswith("pool"):
      plan.append(Layer("max_pool", entry, kernel=3, stride=2))
    elif cfg.aux_heads:
      plan.append(Module("aux_head", entry))
  return plan + [Layer("global_pool", "global_pool"),
                 Layer("dropout", "dropout"), Layer("logits", "logits")]


def inception_small_plan(cfg):
  del cfg
  plan = [Layer("crop", "crop", blocks.ZHANG_CROP),
          Layer("conv", "conv1", 96, bn=True)]
  for i, (kind, *widths) in enumerate(SMALL_MODULES, start=1):
    plan.append(Module(f"small_{kind}", f"{kind}{i}", tuple(widths)))
  return plan + [Layer("global_pool", "global_pool"),
                 Layer("logits", "logits")]


def build(plan, cfg, name):
  """Runs the plan; aux_head entries branch off into auxiliary logits."""
  aux_logits = []

  def add_aux_head(x, module, cfg):
    aux_logits.append(aux_head(x, module.name, cfg))
    return x

  model_blocks = {**blocks.BLOCKS, "googlenet_module": googlenet_module,
                  "small_inception": small_inception,
                  "small_downsample": small_downsample,
                  "aux_head": add_aux_head}
  images = blocks.images_input(cfg)
  x = images
  for entry in plan:
    x = model_blocks[entry.kind](x, entry, cfg)
  if aux_logits:
    x = auxiliary.AuxiliaryLogits(AUX_LOSS_WEIGHT, name="aux_heads")(
        [x] + aux_logits)
  return keras.Model(images, x, name=name)


@register_model("googlenet")
def build_googlenet(cfg):
  """GoogLeNet for 32x32 (see the module docstring)."""
  return build(googlenet_plan(cfg), cfg,
               "googlenet_aux" if cfg.aux_heads else "googlenet")


@register_model("inception_small")
def build_inception_small(cfg):
  """Zhang et al.'s small Inception (see the module docstring)."""
  return build(inception_small_plan(cfg), cfg, "inception_small")
