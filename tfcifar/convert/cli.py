r"""Downloads CIFAR-10 and converts it to TF-slim TFRecords.

Writes what TF-slim's download_and_convert_cifar10.py writes, into
--dataset_dir: cifar10_train.tfrecord (50,000 examples, data_batch_1..5 in
order), cifar10_test.tfrecord (10,000), labels.txt, plus manifest.json (counts,
sha256 per file, train channel mean/std). A second run is a no-op.

  tfcifar-convert --dataset_dir=/data/cifar10      # or python -m tfcifar.convert
  tfcifar-convert --dataset_dir=/data/cifar10 \
      --archive=/path/to/cifar-10-python.tar.gz      # or a tar of image folders
  tfcifar-convert --image_dir=/data/cifar10-png
  tfcifar-convert --source=sample --num_shards=4

The md5 is checked for the download and for a local archive named
cifar-10-python.tar.gz; any archive is checked for the expected layout.
"""

from absl import app
from absl import flags

from tfcifar import convert
from tfcifar import errors
from tfcifar.config import expand_path

flags.DEFINE_string("dataset_dir", convert.DEFAULT_DATA_DIR,
                    "Where to write the records ($TFCIFAR_DATA_DIR or "
                    "~/tfcifar_data/cifar10 by default).")
flags.DEFINE_enum("source", None, list(convert.SOURCES),
                  "Where the images come from; default: inferred from "
                  "--archive/--image_dir, else download.")
flags.DEFINE_string("archive", None,
                    "A local cifar-10-python.tar.gz, or a tar(.gz) of "
                    "train/<class>/* and test/<class>/* images.")
flags.DEFINE_string("image_dir", None,
                    "A folder train/<class>/* and test/<class>/* of PNG or "
                    "JPEG images; class ids by sorted class name.")
flags.DEFINE_string("url", convert.DEFAULT_URL, "The archive to download.")
flags.DEFINE_string("md5", convert.DEFAULT_MD5,
                    "Expected md5 of the downloaded archive ('' skips the "
                    "check).")
flags.DEFINE_integer("num_shards", 1, "Files per split: 1 writes the two "
                     "TF-slim files, N>1 cifar10_train-0000i-of-0000N."
                     "tfrecord.",
                     lower_bound=1)
flags.DEFINE_boolean("overwrite", False,
                     "Convert again even if --dataset_dir is complete.")
flags.DEFINE_integer("retries", 3, "Download retries (with backoff).",
                     lower_bound=0)
flags.DEFINE_integer("num_workers", None,
                     "Encoding processes (default: the usable CPU cores).",
                     lower_bound=1)

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  convert.run(expand_path(FLAGS.dataset_dir), source=FLAGS.source,
              archive=expand_path(FLAGS.archive),
              image_dir=expand_path(FLAGS.image_dir), num_shards=FLAGS.num_shards,
              overwrite=FLAGS.overwrite, url=FLAGS.url, md5=FLAGS.md5 or None,
              retries=FLAGS.retries, num_workers=FLAGS.num_workers,
              log=lambda message: print(message, flush=True))


def entry_point():
  """The `tfcifar-convert` console script."""
  app.run(lambda argv: errors.run_main(main, argv))


if __name__ == "__main__":
  entry_point()
