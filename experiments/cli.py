"""The command-line edge of the experiment scripts: one-line errors, exit 2.

Kept free of TensorFlow (importing `tfcifar` loads it) so that the runner and
the plotter start in a fraction of a second.
"""

import sys

from absl import app
from absl import flags

EXIT_USAGE = 2


class UsageError(Exception):
  """A bad flag or input file: one line on stderr, exit 2."""


def fail(message, code=EXIT_USAGE):
  """Prints `error: message` on one line to stderr and exits with `code`."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(code)


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
