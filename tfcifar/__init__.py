"""tfcifar: faithful, fast CIFAR-10 experiments in TensorFlow 2 / Keras 3.

Importing the package loads no TensorFlow or Keras (so that the experiment
scripts can use `tfcifar.run_dir` and `tfcifar.errors` and start fast).
`from tfcifar import models` registers the custom Keras layers, so that a saved
`model.keras` loads with `keras.saving.load_model`.
"""

import os

# TensorFlow's C++ INFO/WARNING lines (CPU features, XLA service start-up)
# drown the tools' own output; set TF_CPP_MIN_LOG_LEVEL=0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfcifar import _quiet_tf  # noqa: E402

_quiet_tf.install()  # and the lines TF 2.21 prints before that setting applies

__version__ = "0.1.0"
