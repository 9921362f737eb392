"""Building blocks shared by the model zoo, and the loop over a layer plan.

Every zoo model is a list of `Layer` entries (its "plan"); `build_plan` runs
the entry's block function from `BLOCKS` on the running tensor, one entry
after the other. Conventions (those of `vgglike`):

  * conv/dense -> (BatchNorm | noisy BatchNorm)? -> ReLU; a layer followed by
    BatchNorm has no bias; He-normal kernels.
  * every conv and dense kernel carries the L2 weight decay of
    `regularization` (weight_decay * sum(w^2) / 2); nothing else is decayed.
  * hidden widths are scaled by `--width_multiplier` (at least 1 unit).
  * the logits layer is float32 (also under mixed_float16) and has neither
    BatchNorm nor a nonlinearity.
  * dropout layers are `keras.layers.Dropout`, whose `SeedGenerator` state is
    a non-trainable variable: it works under `stateless_call`, XLA and
    tf.distribute, and the trainer checkpoints it.
"""

import dataclasses

import keras
from keras import ops

from tfcifar.models import probes
from tfcifar.models import regularization
from tfcifar.models import vgglike

RELU_KERNEL_INIT = vgglike.RELU_KERNEL_INIT
# Zhang et al. 2017 (Appendix A) train on the central 28x28 crop of the
# 32x32 images; their parameter counts (Table 1) are for that input.
ZHANG_CROP = 28


@dataclasses.dataclass(frozen=True)
class Layer:
  """One entry of a plan.

  kind: a key of BLOCKS. width: filters / units (before --width_multiplier).
  kernel, stride, padding: of conv and pooling layers. bn: True/False, or
  None for "as --bn says". dropout_scale: a dropout layer's rate is
  dropout_scale * --dropout.
  """
  kind: str
  name: str
  width: int = 0
  kernel: int = 3
  stride: int = 1
  padding: str = "same"
  bn: object = None
  dropout_scale: float = 1.0


def use_bn(cfg, bn):
  """Whether a layer gets BatchNorm: its own setting, else --bn."""
  return cfg.bn if bn is None else bn


def width(cfg, units):
  return vgglike.scaled_width(units, cfg.width_multiplier)


def decay(cfg):
  return regularization.kernel_regularizer(cfg.weight_decay)


def activate(x, cfg, name, bn, relu=True):
  """(BN ->) ReLU after the linear layer `name` (ReLU named for the probes)."""
  if bn:
    x = vgglike.normalization(cfg, f"{name}_bn")(x)
  if relu:
    x = keras.layers.ReLU(name=f"{name}{probes.RELU_SUFFIX}")(x)
  return x


def conv(x, cfg, filters, kernel, name, stride=1, padding="same", bn=None,
         relu=True, scale=True):
  """Conv2D -> (BN ->) ReLU; `scale` applies --width_multiplier."""
  bn = use_bn(cfg, bn)
  x = keras.layers.Conv2D(
      width(cfg, filters) if scale else filters, kernel, strides=stride,
      padding=padding, use_bias=not bn, kernel_initializer=RELU_KERNEL_INIT,
      kernel_regularizer=decay(cfg), name=name)(x)
  return activate(x, cfg, name, bn, relu)


def dense(x, cfg, units, name, bn=None):
  bn = use_bn(cfg, bn)
  x = keras.layers.Dense(width(cfg, units), use_bias=not bn,
                         kernel_initializer=RELU_KERNEL_INIT,
                         kernel_regularizer=decay(cfg), name=name)(x)
  return activate(x, cfg, name, bn)


def logits(x, cfg, name="logits"):
  return keras.layers.Dense(cfg.num_classes, dtype="float32",
                            kernel_regularizer=decay(cfg), name=name)(x)


def dropout(x, rate, name):
  """keras Dropout (seeded from keras' global seed); none at rate 0."""
  if not rate:
    return x
  return keras.layers.Dropout(rate, name=name)(x)


@keras.saving.register_keras_serializable(package="tfcifar")
class LocalResponseNormalization(keras.layers.Layer):
  """Local response normalisation across channels (Krizhevsky et al. 2012,
  Section 3.3), as `tf.nn.local_response_normalization`:

    b_c = a_c / (bias + alpha * sum_{|d - c| <= depth_radius} a_d^2) ** beta

  Defaults are those of Zhang et al.'s small AlexNet (the TF CIFAR-10
  tutorial): depth_radius 4, bias 1, alpha 0.001 / 9, beta 0.75.
  """

  def __init__(self, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75,
               **kwargs):
    super().__init__(**kwargs)
    self.depth_radius = int(depth_radius)
    self.bias, self.alpha, self.beta = float(bias), float(alpha), float(beta)

  def call(self, inputs):
    x = ops.cast(inputs, "float32")
    squares = ops.square(x)
    r = self.depth_radius
    padded = ops.pad(squares, [[0, 0]] * (len(x.shape) - 1) + [[r, r]])
    channels = x.shape[-1]
    window = sum(padded[..., d:d + channels] for d in range(2 * r + 1))
    out = x / ops.power(self.bias + self.alpha * window, self.beta)
    return ops.cast(out, inputs.dtype)

  def get_config(self):
    return {**super().get_config(), "depth_radius": self.depth_radius,
            "bias": self.bias, "alpha": self.alpha, "beta": self.beta}


# --- the sequential plan's blocks: block(x, layer, cfg) -> x ---------------


def conv_block(x, layer, cfg):
  return conv(x, cfg, layer.width, layer.kernel, layer.name, layer.stride,
              layer.padding, layer.bn)


def dense_block(x, layer, cfg):
  return dense(x, cfg, layer.width, layer.name, layer.bn)


def max_pool_block(x, layer, cfg):
  del cfg
  return keras.layers.MaxPooling2D(layer.kernel, layer.stride,
                                   padding=layer.padding, name=layer.name)(x)


def dropout_block(x, layer, cfg):
  return dropout(x, layer.dropout_scale * cfg.dropout, layer.name)


def crop_block(x, layer, cfg):
  del cfg
  return keras.layers.CenterCrop(layer.width, layer.width, name=layer.name)(x)


def lrn_block(x, layer, cfg):
  del cfg
  return LocalResponseNormalization(name=layer.name)(x)


def flatten_block(x, layer, cfg):
  del cfg
  return keras.layers.Flatten(name=layer.name)(x)


def global_pool_block(x, layer, cfg):
  del cfg
  return keras.layers.GlobalAveragePooling2D(name=layer.name)(x)


def logits_block(x, layer, cfg):
  return logits(x, cfg, layer.name)


BLOCKS = {
    "conv": conv_block,
    "dense": dense_block,
    "max_pool": max_pool_block,
    "dropout": dropout_block,
    "crop": crop_block,
    "lrn": lrn_block,
    "flatten": flatten_block,
    "global_pool": global_pool_block,
    "logits": logits_block,
}


def images_input(cfg):
  return keras.Input(shape=cfg.input_shape, dtype="float32", name="images")


def build_plan(plan, cfg, name, blocks=None):
  """The functional model running `plan` (a list of Layer) on the images."""
  blocks = blocks or BLOCKS
  images = images_input(cfg)
  x = images
  for layer in plan:
    x = blocks[layer.kind](x, layer, cfg)
  return keras.Model(images, x, name=name)
