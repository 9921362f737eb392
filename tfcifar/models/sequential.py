"""The zoo's plain feed-forward models, each a plan of `blocks.Layer`s.

  lenet5       LeCun et al. 1998 (Section II.B, "LeNet-5"), as the deep-learning
               overview note gives it: conv5x5x6, pool, conv5x5x16, pool,
               FC 120, FC 84, FC 10 with ReLU and 2x2 max-pools; valid convs,
               62,006 parameters on 32x32x3. `--bn` adds BatchNorm.
  alexnet      Zhang et al. 2017 (Appendix A, "small Alexnet"): on the central
               28x28 crop, two (conv5x5x64 -> max-pool 3x3/2 -> local
               response norm) modules, FC 384, FC 192, FC 10: 1,387,786
               parameters (Table 1). `--bn` adds BatchNorm.
  mlp          Zhang et al. 2017 (Appendix A, Table 1): the central 28x28 crop,
               flattened, `--mlp_units` hidden ReLU layers: 1x512 has
               1,209,866 parameters, 3x512 1,735,178. `--bn` adds BatchNorm.
  cnn, cnn_bn  the chainer CIFAR-10 note's Cifar10Net: 3 x (conv5x5 pad 2
               [64, 64, 128] -> (BN ->) ReLU -> max-pool 3x3/2), dropout,
               FC 1000, ReLU, dropout, FC 10 (`--dropout`, 0.5). cnn_bn always
               has BatchNorm; `--model=cnn --bn` is the same network.
  vgg_dropout  the chainer note's VGG: conv3x3 64,64 / 128,128 / 256 x 4, each
               with BatchNorm and ReLU, a 2x2 max-pool and dropout of half of
               `--dropout` (0.25) after each stage, then FC 1024 -> ReLU ->
               dropout -> FC 1024 -> ReLU -> dropout -> FC 10. Always BN.
  shallow_cnn  the shallow CNN note: conv7x7x64, 3x3x128, 3x3x256, 3x3x256,
               each with BatchNorm and ReLU, 2x2 max-pools after the first,
               second and fourth conv, then FC 512 (BN, ReLU) and FC 10. The
               note names the layers only; the pooling positions and the
               dense width are ours. Always BN.
"""

from tfcifar.models import blocks
from tfcifar.models.blocks import Layer
from tfcifar.models.registry import register_model

CHAINER_POOL = dict(kernel=3, stride=2, padding="same")  # chainer's 3x3/2


def lenet5_plan(cfg):
  del cfg
  return [
      Layer("conv", "conv1", 6, kernel=5, padding="valid"),
      Layer("max_pool", "pool1", kernel=2, stride=2),
      Layer("conv", "conv2", 16, kernel=5, padding="valid"),
      Layer("max_pool", "pool2", kernel=2, stride=2),
      Layer("flatten", "flatten"),
      Layer("dense", "fc1", 120),
      Layer("dense", "fc2", 84),
      Layer("logits", "logits"),
  ]


def alexnet_plan(cfg):
  del cfg
  plan = [Layer("crop", "crop", blocks.ZHANG_CROP)]
  for i in (1, 2):
    plan += [Layer("conv", f"conv{i}", 64, kernel=5),
             Layer("max_pool", f"pool{i}", **CHAINER_POOL),
             Layer("lrn", f"norm{i}")]
  return plan + [Layer("flatten", "flatten"), Layer("dense", "fc1", 384),
                 Layer("dense", "fc2", 192), Layer("logits", "logits")]


def mlp_plan(cfg):
  plan = [Layer("crop", "crop", blocks.ZHANG_CROP),
          Layer("flatten", "flatten")]
  plan += [Layer("dense", f"fc{i}", units)
           for i, units in enumerate(cfg.mlp_widths, start=1)]
  return plan + [Layer("logits", "logits")]


def cifar10net_plan(bn):
  """The chainer note's Cifar10Net; bn=None follows --bn."""
  plan = []
  for i, filters in enumerate((64, 64, 128), start=1):
    plan += [Layer("conv", f"conv{i}", filters, kernel=5, bn=bn),
             Layer("max_pool", f"pool{i}", **CHAINER_POOL)]
  return plan + [Layer("flatten", "flatten"), Layer("dropout", "dropout1"),
                 Layer("dense", "fc1", 1000, bn=False),
                 Layer("dropout", "dropout2"), Layer("logits", "logits")]


def vgg_dropout_plan(cfg):
  del cfg
  plan = []
  for stage, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 4)),
                                           start=1):
    plan += [Layer("conv", f"conv{stage}_{i}", filters, bn=True)
             for i in range(1, convs + 1)]
    plan += [Layer("max_pool", f"pool{stage}", kernel=2, stride=2),
             Layer("dropout", f"dropout{stage}", dropout_scale=0.5)]
  plan.append(Layer("flatten", "flatten"))
  for i in (1, 2):
    plan += [Layer("dense", f"fc{i}", 1024, bn=False),
             Layer("dropout", f"fc{i}_dropout")]
  return plan + [Layer("logits", "logits")]


def shallow_cnn_plan(cfg):
  del cfg
  pool = lambda i: Layer("max_pool", f"pool{i}", kernel=2, stride=2)
  return [
      Layer("conv", "conv1", 64, kernel=7, bn=True), pool(1),
      Layer("conv", "conv2", 128, bn=True), pool(2),
      Layer("conv", "conv3", 256, bn=True),
      Layer("conv", "conv4", 256, bn=True), pool(3),
      Layer("flatten", "flatten"),
      Layer("dense", "fc1", 512, bn=True),
      Layer("logits", "logits"),
  ]


# name -> (plan(cfg), whether the name gets a "_bn" suffix when --bn is set).
PLANS = {
    "lenet5": (lenet5_plan, True),
    "alexnet": (alexnet_plan, True),
    "mlp": (mlp_plan, True),
    "cnn": (lambda cfg: cifar10net_plan(None), True),
    "cnn_bn": (lambda cfg: cifar10net_plan(True), False),
    "vgg_dropout": (vgg_dropout_plan, False),
    "shallow_cnn": (shallow_cnn_plan, False),
}


def _register(name, plan, bn_suffix):
  @register_model(name)
  def build(cfg):
    suffix = "_bn" if bn_suffix and cfg.bn else ""
    return blocks.build_plan(plan(cfg), cfg, f"{name}{suffix}")

  build.__doc__ = f"The functional {name} model (see the module docstring)."
  return build


for _name, (_plan, _suffix) in PLANS.items():
  _register(_name, _plan, _suffix)
