"""tf.distribute strategies: one device, mirrored, multi-worker.

On a machine without GPUs, `mirrored` splits the CPU into logical devices, so
the multi-replica code path is exercised (and tested) on a laptop.
`multi_worker` reads the cluster from `TF_CONFIG`, e.g. two local processes:
  TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
              "task": {"type": "worker", "index": 0}}'
"""

import json
import os

import tensorflow as tf

from tfcifar.errors import UserError

STRATEGIES = ("default", "mirrored", "multi_worker")


def _split_cpu(num_devices):
  """Splits the first CPU into logical devices (before TF initialises them)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
  return [f"/cpu:{i}" for i in range(num_devices)]


def _mirrored(num_cpu_devices):
  if tf.config.list_physical_devices("GPU"):
    return tf.distribute.MirroredStrategy()
  return tf.distribute.MirroredStrategy(_split_cpu(num_cpu_devices))


def _multi_worker(num_cpu_devices):
  del num_cpu_devices
  if not os.environ.get("TF_CONFIG"):
    raise UserError("--strategy=multi_worker needs the TF_CONFIG environment "
                    "variable (cluster and task)")
  try:
    json.loads(os.environ["TF_CONFIG"])
  except ValueError as e:
    raise UserError(f"TF_CONFIG is not valid JSON: {e}") from None
  return tf.distribute.MultiWorkerMirroredStrategy()


_BUILDERS = {
    "default": lambda num_cpu_devices: tf.distribute.get_strategy(),
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
}


def make_strategy(name, num_cpu_devices=2):
  """The strategy called `name`. Call it first: it may configure devices."""
  if name not in _BUILDERS:
    raise UserError(f"--strategy={name} is not one of {', '.join(STRATEGIES)}")
  return _BUILDERS[name](num_cpu_devices)


def task_info(strategy):
  """(task_type, task_id) of this process; (None, 0) when not multi-worker."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return None, 0
  return resolver.task_type, resolver.task_id


def is_chief(strategy):
  """Whether this process writes logs, metrics and the final model."""
  task_type, task_id = task_info(strategy)
  if task_type is None or task_type == "chief":
    return True
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and "chief" not in cluster
