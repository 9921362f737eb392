"""The model registry: name -> builder(ModelConfig) -> keras.Model."""

from tfcifar.errors import UserError

MODELS = {}
MODELS_WITH_DROPOUT = set()  # builders that honour ModelConfig.dropout


def register_model(name, dropout=False):
  """Decorator registering `builder(cfg) -> keras.Model` under `name`;
  `dropout`: the builder uses `cfg.dropout` (else a rate > 0 is refused)."""

  def register(builder):
    if name in MODELS:
      raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = builder
    if dropout:
      MODELS_WITH_DROPOUT.add(name)
    return builder

  return register


def check_dropout(cfg):
  """UserError when `cfg.dropout` > 0 for a model without dropout layers."""
  if cfg.dropout > 0 and cfg.name in MODELS and (
      cfg.name not in MODELS_WITH_DROPOUT):
    with_dropout = ", ".join(sorted(MODELS_WITH_DROPOUT)) or "none yet"
    raise UserError(f"--dropout={cfg.dropout}: --model={cfg.name} has no "
                    f"dropout layers (models with dropout: {with_dropout})")


def build_model(cfg):
  """Builds the functional Keras model `cfg.name` (UserError if unknown)."""
  builder = MODELS.get(cfg.name)
  if builder is None:
    raise UserError(f"unknown model {cfg.name!r}; known models: "
                    f"{', '.join(sorted(MODELS))}")
  check_dropout(cfg)
  return builder(cfg)
