"""The command-line edge of the analysis commands: flags, errors, outputs.

Each command defines its flags when it starts (`run(define_flags, main)`),
not when it is imported, so that its pure functions can be imported next to
`tfcifar.train`, whose flags have the same names (--model_dir, --data_dir).
Bad input is one line `error: ...` with exit 2; an unexpected failure is one
line with exit 1. Every output file is written to a temporary name and
renamed when complete.
"""

import json
import os
import re

from absl import app
from absl import flags

from tfcifar import cifar10
from tfcifar import errors

EXIT_FAILED = 1
_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def run(define_flags, main):
  """Defines the flags, parses them (bad flag: one line, exit 2), runs main."""
  define_flags()

  def parse_flags(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      errors.fail(e)

  def guarded(argv):
    if len(argv) > 1:
      errors.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
      return errors.run_main(main, argv)
    except Exception as e:  # pylint: disable=broad-except
      errors.fail(f"{type(e).__name__}: {e}", EXIT_FAILED)

  app.run(guarded, flags_parser=parse_flags)


def parse_int_list(text, flag):
  """'0-3,7' -> [0, 1, 2, 3, 7]; UserError naming `flag` when malformed."""
  values = []
  for part in str(text).split(","):
    match = _RANGE_RE.match(part)
    if not match:
      raise errors.UserError(f"{flag}={text!r}: expected numbers and ranges "
                             "such as 0-15 or 4,8,16")
    first, last = int(match.group(1)), int(match.group(2) or match.group(1))
    if last < first:
      raise errors.UserError(f"{flag}={text!r}: range {part.strip()} is empty")
    values.extend(range(first, last + 1))
  return list(dict.fromkeys(values))


def write_text(path, text):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  cifar10.write_text_atomic(path, text)


def write_json(path, payload):
  write_text(path, json.dumps(payload, indent=1) + "\n")


def save_figure(fig, path, dpi=120):
  """Writes a matplotlib Figure as PNG via a temporary name and a rename."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  fig.savefig(tmp, format="png", dpi=dpi)
  os.replace(tmp, path)
