"""The tf.data input pipeline: cached decoded split -> seeded batches.

The split is decoded once per process (`records.read_split`), corrupted once
(`corruptions`), and kept as one uint8 tensor on the CPU. Each epoch is then
only index arithmetic:

  order of epoch e   = stateless shuffle of 0..N-1 with seed (seed, e)
  train order        = order[:N // B * B]        (whole global batches only)
  worker's part      = block pipeline_id of W of each global batch of the
                       train order (`shard_order`)
  batch b            = gather(images, part[b*B:(b+1)*B])
                       -> augment_batch(rows of the draws of global
                          batch b's seed (seed, e, 0, b): `replica_slices`)
                       -> normalize

so the batches of epoch e are a pure function of (seed, e): a run resumed at
epoch e sees exactly the batches an uninterrupted run sees. Batches are built
by a parallel, deterministic `map` over batch indices and prefetched.
"""

import collections
import hashlib
import json
import math
import os
import threading
import zlib

import numpy as np
import tensorflow as tf

from tfcifar import cifar10
from tfcifar.data import augment as augment_lib
from tfcifar.data import autoaugment as autoaugment_lib
from tfcifar.data import corruptions
from tfcifar.data import cutout as cutout_lib
from tfcifar.data import preprocess as preprocess_lib
from tfcifar.data import records
from tfcifar.errors import DataError, UserError

_MAX_CORRUPTED = 4  # corrupted splits kept in memory at once

_lock = threading.RLock()
_tensors = collections.OrderedDict()  # (dir, split, corruption) -> tensors
_stats = {}  # dir -> (mean, std)
_fitted = {}  # (dir, preprocess) -> (key, stats)


# --- normalization ---------------------------------------------------------


def normalization_stats(data_dir):
  """Per-channel (mean[3], std[3]) of the train pixels, 0..255 units.

  From manifest.json (written by the converter) when there is one, else
  computed once from the decoded train split.
  """
  manifest = cifar10.read_manifest(data_dir)
  if manifest is not None and "mean" in manifest and "std" in manifest:
    mean, std = manifest["mean"], manifest["std"]
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
      raise DataError(f"manifest in {data_dir} has bad mean/std {mean}/{std}")
    return [float(m) for m in mean], [float(s) for s in std]
  key = records.read_split(data_dir, "train")  # cached; identity = freshness
  with _lock:
    if _stats.get(data_dir, (None,))[0] is not key:
      _stats[data_dir] = (key, cifar10.channel_stats(key.images))
    return _stats[data_dir][1]


NORMALIZATIONS = ("standardize", "unit")  # the old --normalization values
PREPROCESSES = tuple(preprocess_lib.PREPROCESSORS)
PREPROCESS_CACHE = "preprocess-{name}.npz"  # beside the data
_CACHE_VERSION = 1


def validate_preprocess(preprocess, flag="--preprocess"):
  """Raises UserError naming `flag` unless `preprocess` is a known one."""
  if preprocess not in preprocess_lib.PREPROCESSORS:
    raise UserError(f"{flag}={preprocess!r}: choose one of "
                    f"{', '.join(preprocess_lib.PREPROCESSORS)}")


def validate_normalization(normalization):
  """The deprecated --normalization: standardize or unit."""
  if normalization not in NORMALIZATIONS:
    raise UserError(f"--normalization={normalization!r}: choose one of "
                    f"{', '.join(NORMALIZATIONS)} (deprecated: --preprocess)")


def _data_key(data_dir):
  """What the fitted statistics depend on: the train records, by manifest
  (checksums) or by file names, sizes and times."""
  manifest = cifar10.read_manifest(data_dir)
  if manifest is not None:
    text = json.dumps(manifest, sort_keys=True)
  else:
    files = cifar10.find_record_files(data_dir, "train")
    text = json.dumps([(os.path.basename(f), os.path.getsize(f),
                        os.path.getmtime(f)) for f in files])
  return hashlib.sha256(f"{_CACHE_VERSION}:{text}".encode()).hexdigest()


def _load_cache(path, key):
  try:
    with np.load(path) as saved:
      if str(saved["_key"]) == key:
        return {k: saved[k] for k in saved.files if k != "_key"}
  except (OSError, ValueError, KeyError):
    pass
  return None


def save_stats(path, stats, key=""):
  """Writes `stats` ({name: array}) to `path` via a temporary name."""
  tmp = f"{path}.tmp-{os.getpid()}.npz"
  np.savez(tmp, _key=np.array(key), **stats)
  os.replace(tmp, path)


def load_stats(path):
  """The statistics saved by `save_stats` (of a run, whatever the key)."""
  with np.load(path) as saved:
    return {k: saved[k] for k in saved.files if k != "_key"}


def preprocess_stats(data_dir, preprocess):
  """The statistics of `preprocess` for `data_dir`, {name: array}.

  standardize: the manifest's per-channel mean/std (`normalization_stats`);
  fitted ones (mean, zca, gcn_zca): computed once from the whole train split
  and cached beside the data in preprocess-<name>.npz (written atomically;
  recomputed when the data changes; kept in memory only where the data
  directory is read-only).
  """
  validate_preprocess(preprocess)
  spec = preprocess_lib.PREPROCESSORS[preprocess]
  if spec.channel_stats:
    mean, std = normalization_stats(data_dir)
    return {"mean": np.asarray(mean), "std": np.asarray(std)}
  if spec.fit is None:
    return {}
  key = _data_key(data_dir)
  with _lock:
    cached = _fitted.get((data_dir, preprocess))
    if cached is not None and cached[0] == key:
      return cached[1]
    path = os.path.join(data_dir, PREPROCESS_CACHE.format(name=preprocess))
    stats = _load_cache(path, key)
    if stats is None:
      stats = spec.fit(records.read_split(data_dir, "train").images)
      try:
        save_stats(path, stats, key)
      except OSError:
        pass  # a read-only data directory: fitted again by the next process
    _fitted[(data_dir, preprocess)] = (key, stats)
    return stats


def normalizer(data_dir, normalization, stats=None):
  """`images uint8 -> float32` for `normalization` (a PREPROCESSES key);
  `stats` (e.g. a run's recorded ones) instead of the data's."""
  validate_preprocess(normalization)
  if stats is None:
    stats = preprocess_stats(data_dir, normalization)
  apply = preprocess_lib.PREPROCESSORS[normalization].apply
  return lambda images: apply(images, **stats)


# --- the stored split ------------------------------------------------------


def split_arrays(data_dir, split, corrupt=None, corrupt_prob=0.0, seed=0):
  """(images uint8 [N,32,32,3], labels int64 [N]) numpy, after corruption."""
  clean = records.read_split(data_dir, split)
  return corruptions.corrupt_split(corrupt, split, clean.images, clean.labels,
                                   seed, corrupt_prob)


def split_tensors(data_dir, split, corrupt, corrupt_prob, seed):
  """The stored split as CPU tensors (images uint8, labels int32), cached."""
  clean = records.read_split(data_dir, split)
  uses_prob = (not corruptions.is_clean(corrupt) and
               corruptions.CORRUPTIONS[corrupt].uses_prob)
  if corruptions.is_clean(corrupt) or (uses_prob and corrupt_prob == 0):
    corrupt, corrupt_prob, seed = None, 0.0, 0  # share the clean tensors
  elif not uses_prob:
    corrupt_prob = 0.0
  key = (id(clean), split, corrupt, float(corrupt_prob), int(seed))
  with _lock:
    cached = _tensors.get(key)
    if cached is None or cached[0] is not clean:
      images, labels = corruptions.corrupt_split(
          corrupt, split, clean.images, clean.labels, seed, corrupt_prob)
      with tf.device("/cpu:0"):
        cached = (clean, tf.constant(images), tf.constant(labels, tf.int32))
      _tensors[key] = cached
      while len(_tensors) > _MAX_CORRUPTED:
        _tensors.popitem(last=False)
    _tensors.move_to_end(key)
    return cached[1], cached[2]


def clear_cache():
  """Forgets every decoded, corrupted and statistics cache entry."""
  with _lock:
    _tensors.clear()
    _stats.clear()
    _fitted.clear()
  records.clear_cache()


# --- sizes -----------------------------------------------------------------


def _check_split(split):
  if split not in cifar10.SPLITS:
    raise UserError(f"split={split!r}: expected one of "
                    f"{', '.join(cifar10.SPLITS)}")


def _check_max_examples(max_examples):
  if max_examples is not None and (
      isinstance(max_examples, bool) or int(max_examples) != max_examples or
      max_examples < 1):
    raise UserError(f"--max_examples={max_examples} must be a positive integer")


def split_size(data_dir, split, max_examples=None):
  """Examples of `split` the pipeline reads (the first `max_examples`)."""
  _check_split(split)
  _check_max_examples(max_examples)
  size = len(records.read_split(data_dir, split))
  return size if max_examples is None else min(size, int(max_examples))


def _default_drop_remainder(split, drop_remainder):
  return split == "train" if drop_remainder is None else bool(drop_remainder)


def steps_per_epoch(data_dir, split, batch_size, max_examples=None,
                    drop_remainder=None):
  """Batches in one epoch of `make_dataset(...)` with the same arguments."""
  size = split_size(data_dir, split, max_examples)
  if _default_drop_remainder(split, drop_remainder):
    return size // batch_size
  return math.ceil(size / batch_size)


# --- seeds -----------------------------------------------------------------


def _stream_seed(seed, stream, *data):
  """Stateless seed [2] for (seed, stream, *data), each a scalar tensor."""
  key = tf.constant([int(seed), zlib.crc32(stream.encode())], tf.int64)
  for value in data:
    key = tf.random.experimental.stateless_fold_in(
        key, tf.cast(value, tf.int64), alg=augment_lib.ALG)
  return key


def epoch_order(num_examples, seed, epoch, shuffle=True):
  """The example indices of `epoch`: a seeded permutation, or 0..N-1."""
  order = tf.range(num_examples, dtype=tf.int64)
  if not shuffle:
    return order
  return tf.random.experimental.stateless_shuffle(
      order, _stream_seed(seed, "shuffle", epoch), alg=augment_lib.ALG)


def contiguous_blocks(global_batch, num_pipelines, drop_remainder):
  """Whether each pipeline's part of a global batch is one contiguous block
  (`shard_order`): whole global batches that the pipelines divide."""
  return drop_remainder and global_batch % num_pipelines == 0


def shard_order(order, num_pipelines, pipeline_id, drop_remainder,
                global_batch=1):
  """This worker's part of the global order.

  When dropping the remainder, the order is first cut to whole global batches,
  so that every worker's part is exactly its share of the epoch's steps: an
  epoch then ends with its own last step (no batch spills into the next epoch)
  and each global step covers the same examples on any number of replicas and
  workers (order[s*B:(s+1)*B] for step s). Worker w takes the w-th of W
  contiguous blocks of every global batch, so replica r (over all workers)
  gets order[s*B + r*b:][:b], b = B / replicas, as Mirrored's replica r does
  on one worker: W workers then compute bit for bit what W local replicas
  do. (Examples w, w+W, ... would be summed in another order; a ReLU network
  can amplify those ulps, e.g. through a flipped max-pool near-tie.)
  Without dropping (or if W does not divide B): examples w, w+W, ...
  """
  if drop_remainder:
    order = order[:tf.size(order) // global_batch * global_batch]
  if num_pipelines == 1:
    return order
  if contiguous_blocks(global_batch, num_pipelines, drop_remainder):
    blocks = tf.reshape(order, [-1, num_pipelines,
                                global_batch // num_pipelines])
    return tf.reshape(blocks[:, pipeline_id], [-1])
  return order[pipeline_id::num_pipelines]


def replica_slices(global_batch, replica_batch, num_pipelines, pipeline_id,
                   drop_remainder):
  """(local replicas, offset of this pipeline's first replica in the global
  batch) when every replica's batch is a block of the global one (whole
  global batches, contiguous blocks: `shard_order`), else None.

  The random augmentation parameters of global step s are then drawn once for
  the whole global batch, from (seed, stream, epoch, 0, s), and each replica
  takes its block: an image is augmented the same way on any number of
  replicas and workers (on one device, rows [0, B) of the same draw).
  """
  per_pipeline = global_batch // num_pipelines
  if not (contiguous_blocks(global_batch, num_pipelines, drop_remainder) and
          per_pipeline % replica_batch == 0):
    return None
  return per_pipeline // replica_batch, pipeline_id * per_pipeline


# --- the dataset -----------------------------------------------------------

# The dataset functions are plain TF (Python `if`s on Python values only), so
# they skip AutoGraph's conversion, which costs a second per dataset.
_plain = tf.autograph.experimental.do_not_convert


def _replica_batch(batch_size, input_context):
  if (isinstance(batch_size, bool) or int(batch_size) != batch_size or
      batch_size < 1):
    raise UserError(f"--batch_size={batch_size} must be a positive integer")
  if input_context is None:
    return int(batch_size), 1, 0
  try:
    per_replica = input_context.get_per_replica_batch_size(int(batch_size))
  except ValueError as e:
    raise UserError(f"--batch_size={batch_size}: {e}") from None
  return (per_replica, input_context.num_input_pipelines,
          input_context.input_pipeline_id)


def _check_cutout(cutout):
  if isinstance(cutout, bool) or int(cutout) != cutout or not 0 <= cutout <= 32:
    raise UserError(f"--cutout={cutout} must be a whole number of pixels in "
                    "0..32")


def _check_seed(seed, epoch):
  for flag, value in (("--seed", seed), ("epoch", epoch)):
    if isinstance(value, bool) or int(value) != value or value < 0:
      raise UserError(f"{flag}={value} must be a non-negative integer")


def batch_transform(augment, to_float, jit_compile=True, autoaugment=False,
                    cutout=0):
  """`(uint8 batch, seeds) -> batch`: augmentation then normalization.

  In order: crop+flip (`augment`), AutoAugment, `to_float`, Cutout (after
  normalisation, as DeVries & Taylor). `seeds` maps "augment",
  "autoaugment" and "cutout" to the stateless seed of each (unused ones may
  be missing).

  The pixel work (crop/flip gather, AutoAugment's passes, cast, affine map,
  Cutout's mask) is XLA-compiled, which fuses it into few loops and makes the
  pipeline about 2.5x faster on CPU. The random parameters are drawn outside
  XLA (XLA's random number kernels give other numbers than the CPU ones), so
  the batches equal the eager functions exactly.
  """
  if not (augment or autoaugment or cutout) and to_float is None:
    return lambda images, seeds, draws=None, offset=0: images

  def before(images, params):
    if augment:
      images = augment_lib.crop_flip(images, *params["augment"])
    return images

  def after(images, params):
    if to_float is not None:
      images = to_float(images)
    if cutout:
      images = cutout_lib.cutout(images, *params["cutout"], cutout)
    return images

  compile_ = lambda fn: tf.function(fn, jit_compile=jit_compile,
                                    autograph=False)
  if not autoaugment:
    compiled = compile_(lambda images, params: after(before(images, params),
                                                     params))
  else:  # plain TF (dynamic shapes) around its passes over the batch:
    # crop+flip goes into its first (the gather), `after` into its last (the
    # table lookup)
    last = compile_(lambda pixels, tables, params: after(
        autoaugment_lib.apply_tables(pixels, tables), params))
    compiled = lambda images, params: last(*autoaugment_lib.autoaugment_parts(
        images, *params["autoaugment"], crop_flip=params.get("augment"),
        jit_compile=jit_compile), params)

  def transform(images, seeds, draws=None, offset=0):
    """`draws` images' parameters are drawn (default: the batch's), and the
    batch takes rows [offset, offset + batch) of them."""
    batch = tf.shape(images)[0]
    draws = batch if draws is None else draws
    params = {}
    if augment:
      params["augment"] = augment_lib.crop_flip_params(draws, seeds["augment"])
    if autoaugment:
      params["autoaugment"] = autoaugment_lib.autoaugment_params(
          draws, seeds["autoaugment"], image_size=images.shape[1])[1:]
    if cutout:
      params["cutout"] = cutout_lib.cutout_params(
          draws, seeds["cutout"], images.shape[1], images.shape[2])
    params = tf.nest.map_structure(lambda t: t[offset:offset + batch], params)
    return compiled(images, params)

  return transform


def make_dataset(data_dir, split="train", batch_size=128, augment=False,
                 corrupt=None, corrupt_prob=0.0, seed=0, normalize=True,
                 shuffle=True, repeat=False, *, epoch=0, input_context=None,
                 max_examples=None, normalization=None,
                 drop_remainder=None, jit_compile=True, preprocess=None,
                 preprocess_stats=None, autoaugment=False, cutout=0):
  """A `tf.data.Dataset` of (images, labels) batches of one CIFAR-10 split.

  Args:
    data_dir: directory written by the converter (see `tfcifar.cifar10`).
    split: "train" or "test".
    batch_size: global batch size (divided by the replicas of
      `input_context`).
    augment: reflect-pad-4 random crop and flip (train split only).
    corrupt: None or a `CORRUPTIONS` name (Zhang et al. 2017).
    corrupt_prob: label corruption probability (`corrupt="labels"`).
    seed: seeds the corruption, the shuffle and the augmentation.
    normalize: float32 images per `preprocess`; False gives the uint8
      pixels after corruption and augmentation (crop/flip, AutoAugment).
    shuffle: a seeded new order each epoch; False keeps record order.
    repeat: run epochs `epoch`, `epoch + 1`, ... forever. Without it, each
      iteration over the dataset is the next epoch: `model.fit(dataset,
      epochs=N)` draws a new order and augmentation every epoch, as the
      trainer does (corruptions stay fixed).
    epoch: the first epoch index (order and augmentation depend on it, the
      seed and the pass number only).
    input_context: `tf.distribute.InputContext`: per-replica batches of this
      worker's disjoint part of the global order.
    max_examples: use the first N examples of the split (record order).
    normalization: deprecated name of `preprocess` ("standardize" or
      "unit").
    drop_remainder: drop the last partial batch; None means True for train,
      False for test.
    jit_compile: XLA-compile the per-batch pixel work (same results, faster;
      False is a fallback for TensorFlow builds without XLA on the CPU).
    preprocess: a `preprocess.PREPROCESSORS` name (default "standardize").
    preprocess_stats: its statistics ({name: array}, as a run recorded
      them); None: `preprocess_stats(data_dir, preprocess)`.
    autoaugment: AutoAugment's CIFAR-10 policy after crop+flip (train only).
    cutout: side of the Cutout square in pixels, 0 = none (train only).

  Returns:
    Dataset of (images [B, 32, 32, 3] float32 (uint8 when not normalize),
    labels [B] int32).
  """
  _check_split(split)
  _check_max_examples(max_examples)
  _check_seed(seed, epoch)
  corrupt_prob = corruptions.validate_corruption(corrupt, corrupt_prob)
  batch, num_pipelines, pipeline_id = _replica_batch(batch_size, input_context)
  drop_remainder = _default_drop_remainder(split, drop_remainder)
  if normalization is not None:
    validate_normalization(normalization)
  preprocess = preprocess or normalization or "standardize"
  validate_preprocess(preprocess)
  _check_cutout(cutout)
  to_float = (normalizer(data_dir, preprocess, preprocess_stats) if normalize
              else None)
  images, labels = split_tensors(data_dir, split, corrupt, corrupt_prob, seed)
  num_examples = split_size(data_dir, split, max_examples)
  if drop_remainder and num_examples // num_pipelines < batch:
    raise UserError(
        f"--batch_size={batch_size} is larger than the {num_examples} "
        f"{split} examples{' per worker' if num_pipelines > 1 else ''}")
  augment = augment and split == "train"
  autoaugment = autoaugment and split == "train"
  cutout = cutout if split == "train" and normalize else 0

  @_plain
  def epoch_batches(epoch_index):
    order = epoch_order(num_examples, seed, epoch_index, shuffle)
    order = shard_order(order, num_pipelines, pipeline_id, drop_remainder,
                        int(batch_size))
    batches = tf.data.Dataset.from_tensor_slices(order).batch(
        batch, drop_remainder=drop_remainder)
    return batches.enumerate().map(
        _plain(lambda step, indices: (epoch_index, step, indices)))

  transform = batch_transform(augment, to_float, jit_compile, autoaugment,
                              cutout)
  streams = [name for name, on in (("augment", augment),
                                   ("autoaugment", autoaugment),
                                   ("cutout", cutout)) if on]

  slices = replica_slices(batch_size, batch, num_pipelines, pipeline_id,
                          drop_remainder)

  @_plain
  def make_batch(epoch_index, step, indices):
    if slices is None:  # this pipeline's own draws per batch
      seeds = {name: _stream_seed(seed, name, epoch_index, pipeline_id, step)
               for name in streams}
      return (transform(tf.gather(images, indices), seeds),
              tf.gather(labels, indices))
    local_replicas, first_offset = slices
    global_step = step // local_replicas
    offset = tf.cast(first_offset + step % local_replicas * batch, tf.int32)
    seeds = {name: _stream_seed(seed, name, epoch_index, 0, global_step)
             for name in streams}
    return (transform(tf.gather(images, indices), seeds, int(batch_size),
                      offset), tf.gather(labels, indices))

  if repeat:
    epochs = tf.data.Dataset.counter(epoch)
  else:  # pass k over the dataset (k = 0, 1, ...) is epoch `epoch + k`
    passes = tf.Variable(tf.constant(epoch, tf.int64), trainable=False)
    epochs = tf.data.Dataset.range(1).map(
        _plain(lambda _: passes.assign_add(1) - 1))
  dataset = epochs.flat_map(epoch_batches)
  dataset = dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)
