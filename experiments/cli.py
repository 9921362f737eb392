"""The command-line edge of the experiment scripts: one-line errors, exit 2.

`tfcifar.errors` and `tfcifar.run_dir` load no TensorFlow, so that the runner
and the plotter start in a fraction of a second.
"""

import sys

from absl import app
from absl import flags

from tfcifar import errors
from tfcifar.run_dir import EXIT_USAGE  # noqa: F401  (re-exported)

UsageError = errors.UserError  # a bad flag or input file: one line, exit 2
fail = errors.fail


def run(main):
  """`app.run(main)` with bad flags and UsageError/OSError as one line.

  `main(argv)` returns the exit code (None for 0).
  """

  def parse_flags(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      fail(e)

  def guarded(argv):
    try:
      code = main(argv)
    except UsageError as e:
      fail(e)
    except OSError as e:
      fail(f"{e.strerror or e} ({e.filename})" if e.filename else e, 1)
    sys.exit(code or 0)

  app.run(guarded, flags_parser=parse_flags)
