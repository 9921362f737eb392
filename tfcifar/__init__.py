"""tfcifar: faithful, fast CIFAR-10 experiments in TensorFlow 2 / Keras 3.

Importing the package registers its custom Keras layers, so that a saved
`model.keras` loads with `keras.saving.load_model` once `tfcifar` is imported.
"""

import os

# TensorFlow's C++ INFO/WARNING lines (CPU features, XLA service start-up)
# drown the tools' own output; set TF_CPP_MIN_LOG_LEVEL=0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfcifar import _quiet_tf  # noqa: E402

_quiet_tf.install()  # and the lines TF 2.21 prints before that setting applies

__version__ = "0.1.0"


def _register_custom_objects():
  try:
    from tfcifar import models  # noqa: F401  (registers serialisable layers)
  except ImportError:  # models not importable yet (partial install)
    pass


_register_custom_objects()
