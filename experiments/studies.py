"""The studies: which runs each one is made of, and how they are labelled.

A study is a flagfile (the run family, `flags/<family>.cfg`) plus a grid over
the swept flags. Each grid point is a `Run` whose name says its swept values
(`bn_lr/bn-lr0.05`) and whose label is the figure legend ("BN, lr=0.05").

  bn_lr             BN / no BN x lr 0.01, 0.05, 0.1, 0.5
  bn_noise          BN, BN + noise, no BN
  augmentation      without / with reflect-pad crop + flip
  label_corruption  random labels with p = 0.0, 0.1, ... 1.0
  image_corruption  shuffled pixels, random pixels, gaussian

The numbers behind each choice (lr, BN, epochs) live in the flagfiles, with
the reasoning in their header comments.
"""

import dataclasses
import itertools
from typing import Tuple

FLAGS_DIR = "flags"


@dataclasses.dataclass(frozen=True)
class Option:
  """One value of a swept axis: its part of the run name, label and flags.

  `style` is ((key, value), ...) for its figure lines: `color` (an index into
  the study's palette, shared by the runs with this option) and `linestyle`.
  """
  name: str
  label: str
  flags: Tuple[str, ...]
  style: Tuple[Tuple[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a study."""
  study: str
  name: str
  label: str
  flags: Tuple[str, ...]
  style: Tuple[Tuple[str, object], ...] = ()

  @property
  def key(self):
    """`study/name`: the run directory relative to the runs dir."""
    return f"{self.study}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Study:
  """A run family (flagfile) and the runs of its grid."""
  name: str
  title: str
  family: str                      # flags/<family>.cfg
  runs: Tuple[Run, ...]
  # Runs of other studies drawn as grey references in this study's figures.
  references: Tuple[Tuple[str, str], ...] = ()

  @property
  def flagfile(self):
    return f"{FLAGS_DIR}/{self.family}.cfg"


def option(name, label, *flags, **style):
  return Option(name, label, tuple(flags), tuple(sorted(style.items())))


def grid(study, *axes):
  """The runs of the cartesian product of `axes` (lists of Options)."""
  runs = []
  for options in itertools.product(*axes):
    runs.append(Run(
        study=study,
        name="-".join(o.name for o in options),
        label=", ".join(o.label for o in options if o.label),
        flags=tuple(f for o in options for f in o.flags),
        style=tuple(item for o in options for item in o.style)))
  return tuple(runs)


def _fmt(value):
  return f"{value:g}"


LEARNING_RATES = (0.01, 0.05, 0.1, 0.5)
LABEL_CORRUPTION_PROBS = tuple(round(0.1 * i, 1) for i in range(11))

BN = option("bn", "BN", "--bn", "--nonoise")
NO_BN = option("nobn", "no BN", "--nobn", "--nonoise", linestyle=":")
BN_NOISE = option("bn-noise", "BN + noise", "--bn", "--noise")

_STUDIES = (
    Study(
        name="bn_lr",
        title="BatchNorm and learning rate",
        family="bn_lr",
        runs=grid("bn_lr", [BN, NO_BN],
                  [option(f"lr{_fmt(lr)}", f"lr={_fmt(lr)}", f"--lr={lr}",
                          color=i) for i, lr in enumerate(LEARNING_RATES)])),
    Study(
        name="bn_noise",
        title="BatchNorm with noise (internal covariate shift)",
        family="bn_noise",
        runs=grid("bn_noise", [BN, BN_NOISE, NO_BN])),
    Study(
        name="augmentation",
        title="Data augmentation (BN, lr=0.05)",
        family="augment",
        runs=grid("augmentation", [
            option("noaug", "no augmentation", "--noaugment"),
            option("aug", "crop + flip", "--augment")])),
    Study(
        name="label_corruption",
        title="Random labels",
        family="label_corruption",
        runs=grid("label_corruption", [
            option(f"labels-p{p:.1f}", f"p={p:.1f}", "--corrupt=labels",
                   f"--corrupt_prob={p}")
            for p in LABEL_CORRUPTION_PROBS])),
    Study(
        name="image_corruption",
        title="Corrupted images",
        family="image_corruption",
        runs=grid("image_corruption", [
            option(c, c.replace("_", " "), f"--corrupt={c}")
            for c in ("shuffled_pixels", "random_pixels", "gaussian")]),
        references=(("label_corruption/labels-p0.0", "clean"),)),
)

STUDIES = {study.name: study for study in _STUDIES}

# The summary figures of the corruption studies: (run key, legend label).
SUMMARY_RUNS = (
    ("label_corruption/labels-p0.0", "clean"),
    ("label_corruption/labels-p0.5", "random labels p=0.5"),
    ("label_corruption/labels-p1.0", "random labels"),
    ("image_corruption/shuffled_pixels", "shuffled pixels"),
    ("image_corruption/random_pixels", "random pixels"),
    ("image_corruption/gaussian", "gaussian"),
)

# The tiny scale of `--smoke`: every study on a CPU in minutes (--noxla: on a
# CPU, compiling the step costs more than these few steps gain from it).
SMOKE_FLAGS = (
    "--vgg_stages=8,M,16,M",
    "--width_multiplier=1.0",
    "--max_train_examples=256",
    "--max_test_examples=100",
    "--batch_size=64",
    "--epochs=2",
    "--noxla",
)


def get(name):
  """The studies called `name` (`all` for every study); KeyError if unknown."""
  if name == "all":
    return list(_STUDIES)
  return [STUDIES[name]]


def select(names):
  """The studies named in `names` (or `all`), in study order, each once."""
  unknown = [n for n in names if n != "all" and n not in STUDIES]
  if unknown:
    from experiments import cli  # pylint: disable=g-import-not-at-top
    raise cli.UsageError(f"--study={','.join(unknown)}: unknown; expected "
                         f"{', '.join(STUDIES)} or all")
  wanted = set(STUDIES) if "all" in names else set(names)
  return [s for s in _STUDIES if s.name in wanted]


def all_runs():
  return {run.key: run for study in _STUDIES for run in study.runs}


def run_labels():
  """{run key: legend label} of every run of every study."""
  return {key: run.label for key, run in all_runs().items()}
