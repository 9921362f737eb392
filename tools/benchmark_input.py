"""Thin wrapper of `python -m tfcifar.benchmarks.input` (needs the package installed)."""

from tfcifar.benchmarks import input

input.entry_point()
