"""User-facing errors: one clear line and a non-zero exit, never a traceback."""

import sys


class UserError(Exception):
  """Bad input from the user (a flag, a file, the data). Exit code 2.

  The message is one line (whitespace, newlines included, collapsed).
  """

  exit_code = 2

  def __init__(self, message=""):
    super().__init__(" ".join(str(message).split()))


class DataError(UserError):
  """The data on disk is missing, malformed or does not match its manifest."""


def fail(message, exit_code=2):
  """Prints `error: message` on one line to stderr and exits."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(exit_code)


def run_main(main, argv):
  """Runs an absl `main(argv)`, turning UserError and OSError into one line."""
  try:
    return main(argv)
  except UserError as e:
    fail(e, e.exit_code)
  except KeyboardInterrupt:
    fail("interrupted", 130)
  except OSError as e:
    fail(f"{e.strerror or e} ({e.filename})" if e.filename else e, 1)
