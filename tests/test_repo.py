"""The repository keeps its promises: CI runs README's exact test command."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
  with open(os.path.join(ROOT, name)) as f:
    return f.read()


def readme_commands():
  """The commands in README.md's fenced blocks under '## The two commands'."""
  section = read("README.md").split("## The two commands", 1)[1]
  section = section.split("\n## ", 1)[0]
  return re.findall(r"```\n(.+?)\n```", section)


def test_ci_runs_readme_test_command_verbatim():
  main_job, test_command = readme_commands()
  assert "pytest" in test_command and "tfcifar.train" in main_job
  ci_lines = [line.strip() for line in read(".ci/run").splitlines()]
  assert test_command in ci_lines
