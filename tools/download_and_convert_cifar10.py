"""Thin wrapper of `tfcifar-convert` / `python -m tfcifar.convert` (needs the
package installed: pip install -e ".[cpu]")."""

from tfcifar.convert import cli

cli.entry_point()
