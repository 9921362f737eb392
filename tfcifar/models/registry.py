"""The model registry: name -> builder(ModelConfig) -> keras.Model."""

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
  """Builds the functional Keras model `cfg.name` (a ModelConfig checks that
  the name is registered)."""
  return MODELS[cfg.name](cfg)
