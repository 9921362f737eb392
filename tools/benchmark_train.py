"""Thin wrapper of `python -m tfcifar.benchmarks.train` (needs the package installed)."""

from tfcifar.benchmarks import train

train.entry_point()
