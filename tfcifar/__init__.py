"""tfcifar: faithful, fast CIFAR-10 experiments in TensorFlow 2 / Keras 3.

Importing the package registers its custom Keras layers, so that a saved
`model.keras` loads with `keras.saving.load_model` once `tfcifar` is imported.
"""

__version__ = "0.1.0"


def _register_custom_objects():
  try:
    from tfcifar import models  # noqa: F401  (registers serialisable layers)
  except ImportError:  # models not importable yet (partial install)
    pass


_register_custom_objects()
