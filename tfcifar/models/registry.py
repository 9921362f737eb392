"""The model registry: name -> builder(ModelConfig) -> keras.Model."""

from tfcifar.errors import UserError

MODELS = {}


def register_model(name):
  """Decorator registering `builder(cfg) -> keras.Model` under `name`."""

  def register(builder):
    if name in MODELS:
      raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = builder
    return builder

  return register


def build_model(cfg):
  """Builds the functional Keras model `cfg.name` (UserError if unknown)."""
  builder = MODELS.get(cfg.name)
  if builder is None:
    raise UserError(f"unknown model {cfg.name!r}; known models: "
                    f"{', '.join(sorted(MODELS))}")
  return builder(cfg)
