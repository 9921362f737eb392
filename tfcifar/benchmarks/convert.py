r"""Benchmarks the CIFAR-10 conversion: images/s from the official format.

  python -m tfcifar.benchmarks.convert [--pixels=real|random] [--num_workers=N]
      [--jpeg_archive=../shared/data/cifar10-jpg.tar.gz] [--cli] [--serial]

Builds a full-size (50,000 + 10,000) archive in the official format
(cifar-10-python.tar.gz with cifar-10-batches-py/data_batch_1..5, test_batch)
in a temp dir, from the real images of --jpeg_archive (decoded) or random
pixels, then times `convert.run(--archive=...)` in this process (TensorFlow
already imported; md5 check, unpickling, parallel PNG encoding, writing,
sha256 and channel stats included). Optionally also times the same through the
command-line tool (process start and imports included), a serial run, and the
conversion of the JPEG image-folder archive (JPEG decoding included).
Prints one line per measurement; the last line is a JSON object with
`images_per_sec`, `seconds` and `cpu_seconds` (all processes) of the
in-process official-format conversion. Other work on the machine slows it:
`load_average` (1 min, before the run) says how busy the machine was.
"""

import io
import json
import os
import pickle
import resource
import subprocess
import sys
import tarfile
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf  # noqa: F401  (imported before timing)

from tfcifar import cifar10
from tfcifar import convert
from tfcifar import errors
from tfcifar.config import expand_path

# The checkout (an editable install), for the default --jpeg_archive.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

flags.DEFINE_enum("pixels", None, ["real", "random"],
                  "Images of the benchmark archive (default: real when "
                  "--jpeg_archive exists).")
flags.DEFINE_string("jpeg_archive", os.path.normpath(os.path.join(
    REPO, "..", "shared", "data", "cifar10-jpg.tar.gz")),
                    "CIFAR-10 as train/<class>/*.jpg, test/<class>/*.jpg.")
flags.DEFINE_integer("num_workers", None, "Encoding processes (default: all "
                     "usable cores).", lower_bound=1)
flags.DEFINE_boolean("jpeg", True, "Also time --archive=--jpeg_archive.")
flags.DEFINE_boolean("cli", True, "Also time the command-line tool.")
flags.DEFINE_boolean("serial", False, "Also time a one-process conversion.")
FLAGS = flags.FLAGS


def official_pixels(images):
  """uint8 [N, 3072] rows (CHW) of HWC images, as in the official pickles."""
  return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(-1, 3072)


def write_official_archive(path, splits):
  """Writes `splits` as cifar-10-python.tar.gz does (6 pickles + meta)."""
  batches = {"test_batch": (splits["test"][0], splits["test"][1])}
  train_images, train_labels = splits["train"]
  for i, index in enumerate(np.array_split(np.arange(len(train_labels)), 5)):
    batches[f"data_batch_{i + 1}"] = (train_images[index], train_labels[index])
  with tarfile.open(path, "w:gz", compresslevel=1) as archive:
    def add(name, obj):
      data = pickle.dumps(obj, protocol=3)  # raw bytes, like Python 2's
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
    for name, (images, labels) in batches.items():
      add(name, {b"batch_label": name.encode(), b"labels": labels.tolist(),
                 b"data": official_pixels(images),
                 b"filenames": [b"%d.png" % i for i in range(len(labels))]})
    add("batches.meta", {b"label_names": [n.encode() for n in
                                          cifar10.CLASS_NAMES]})


def benchmark_splits(pixels):
  if pixels == "real":
    return convert.load_image_archive(FLAGS.jpeg_archive)
  rng = np.random.RandomState(0)
  return {split: (rng.randint(0, 256, (n,) + cifar10.IMAGE_SHAPE, np.uint8),
                  rng.randint(0, cifar10.NUM_CLASSES, n).astype(np.int64))
          for split, n in cifar10.FULL_SPLIT_SIZES.items()}


def cpu_seconds():
  """CPU time of this process and its finished children (the workers)."""
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn):
  start, cpu = time.perf_counter(), cpu_seconds()
  fn()
  return time.perf_counter() - start, cpu_seconds() - cpu


def report(name, seconds, num_images):
  print(f"{name}: {seconds:.2f} s, {num_images / seconds:,.0f} images/s",
        flush=True)


def main(argv):
  del argv
  FLAGS.jpeg_archive = expand_path(FLAGS.jpeg_archive)
  pixels = FLAGS.pixels or ("real" if os.path.exists(FLAGS.jpeg_archive)
                            else "random")
  with tempfile.TemporaryDirectory() as tmp:
    archive = os.path.join(tmp, "cifar-10-python.tar.gz")
    write_official_archive(archive, benchmark_splits(pixels))
    md5 = cifar10.file_digest(archive, "md5")
    num_images = sum(cifar10.FULL_SPLIT_SIZES.values())
    workers = FLAGS.num_workers or convert.workers.default_num_workers()
    print(f"official-format archive of {pixels} pixels: "
          f"{os.path.getsize(archive) / 1e6:.0f} MB; {workers} workers",
          flush=True)
    result = {"num_images": num_images, "pixels": pixels, "workers": workers}

    result["load_average"] = round(os.getloadavg()[0], 2)
    seconds, cpu = timed(lambda: convert.run(
        os.path.join(tmp, "out"), archive=archive, md5=md5,
        num_workers=FLAGS.num_workers, log=None))
    report("official format, in-process", seconds, num_images)
    print(f"  CPU time {cpu:.2f} s (all processes); the load average before "
          f"was {result['load_average']}", flush=True)
    result.update(images_per_sec=round(num_images / seconds, 1),
                  seconds=round(seconds, 3), cpu_seconds=round(cpu, 3))
    if FLAGS.cli:
      command = [sys.executable, "-m", "tfcifar.convert",
                 f"--dataset_dir={os.path.join(tmp, 'out_cli')}",
                 f"--archive={archive}", f"--md5={md5}"]
      if FLAGS.num_workers:
        command.append(f"--num_workers={FLAGS.num_workers}")
      cli_seconds, _ = timed(lambda: subprocess.run(command, check=True,
                                                    stdout=subprocess.DEVNULL))
      report("official format, command line (imports included)", cli_seconds,
             num_images)
      result["cli_seconds"] = round(cli_seconds, 3)
    if FLAGS.serial:
      serial_seconds, _ = timed(lambda: convert.run(
          os.path.join(tmp, "out_serial"), archive=archive, md5=md5,
          num_workers=1, log=None))
      report("official format, one process", serial_seconds, num_images)
      result["serial_seconds"] = round(serial_seconds, 3)
    if FLAGS.jpeg and os.path.exists(FLAGS.jpeg_archive):
      jpeg_seconds, _ = timed(lambda: convert.run(
          os.path.join(tmp, "out_jpeg"), archive=FLAGS.jpeg_archive,
          num_workers=FLAGS.num_workers, log=None))
      report("JPEG image-folder archive, in-process", jpeg_seconds,
             num_images)
      result.update(jpeg_seconds=round(jpeg_seconds, 3),
                    jpeg_images_per_sec=round(num_images / jpeg_seconds, 1))
  print(json.dumps(result))


def entry_point():
  app.run(lambda argv: errors.run_main(main, argv))


if __name__ == "__main__":
  entry_point()
