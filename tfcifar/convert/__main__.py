"""`python -m tfcifar.convert`: the conversion tool (see `tfcifar.convert.cli`)."""

from tfcifar.convert import cli

cli.entry_point()
