"""BatchNormalization whose moving statistics stay in sync across replicas.

Keras 3 creates BatchNorm's moving mean/variance with aggregation "none":
under `tf.distribute.MirroredStrategy` each replica then assigns its own
update to its own copy, the copies drift apart, and the model that is saved
or evaluated (the primary copy) only saw replica 0's batches. Creating them
with aggregation "mean" makes an update in replica context an all-reduce:
every copy becomes the mean of the replicas' updates (as tf.keras 2 did).
Single-device behaviour is unchanged.
"""

import keras


@keras.saving.register_keras_serializable(package="tfcifar")
class BatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` with replica-mean moving statistics."""

  def add_weight(self, *args, **kwargs):
    if kwargs.get("trainable") is False:  # moving_mean, moving_variance
      kwargs["aggregation"] = "mean"
    return super().add_weight(*args, **kwargs)
