"""Thin wrapper of `python -m tfcifar.benchmarks.convert` (needs the package installed)."""

from tfcifar.benchmarks import convert

convert.entry_point()
