r"""Judges the studies' claims on a sweep's runs: `reproduced` or not.

  python experiments/verify.py --runs_dir=experiments/results/cpu_scale
  python experiments/verify.py --runs_dir=runs --scale=full      # GPU sweep

Reads the runs as experiments/plot.py does (seeded runs as their mean over
seeds, final epoch), prints one row per claim of every study present (study,
claim, measured numbers, verdict; the claims and thresholds are in
experiments/claims.py) and exits 0 when every claim is reproduced, 1 when one
is not, 2 for bad flags or a runs_dir without any study.
"""

import os
import sys

if __package__ in (None, ""):  # run as a script: make `experiments` importable
  sys.path.insert(
      0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from tfcifar import config as config_lib  # noqa: E402

from experiments import claims as claims_lib  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import plot  # noqa: E402

FLAGS = flags.FLAGS


def table(verdicts):
  """Plain-text rows: study | claim | measured | verdict."""
  return [f"{v.study:<16} | {v.claim} | {v.measured} | {v.verdict}"
          for v in verdicts]


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  runs = plot.load_runs(FLAGS.runs_dir)
  verdicts = claims_lib.judge(runs, FLAGS.scale)
  if not verdicts:
    raise cli.UsageError(f"no study's runs under {FLAGS.runs_dir} (expected "
                         "<study>/<run>/metrics.csv; see experiments/run.py)")
  print("\n".join(table(verdicts)))
  failed = [v for v in verdicts if not v.reproduced]
  studies = claims_lib.studies_present(runs)
  print(f"{len(verdicts) - len(failed)} of {len(verdicts)} claims reproduced "
        f"({FLAGS.scale} scale; studies: {', '.join(studies)})")
  return 1 if failed else 0


def define_flags():
  config_lib.define_path_flag("runs_dir", "runs", "The sweep's runs directory.")
  flags.DEFINE_enum("scale", "cpu", list(claims_lib.SCALES), "Thresholds: "
                    "cpu (the reduced-scale profile) or full (the notebook's "
                    "numbers).")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
