"""Keeps TensorFlow's start-up lines off stderr (one-line errors stay one line).

TensorFlow 2.21 prints "oneDNN custom operations are on" and the CPU feature
notice through absl's C++ logging before it is initialised, which ignores
TF_CPP_MIN_LOG_LEVEL. `install()` puts a finder on `sys.meta_path` that runs
the first `import tensorflow` with file descriptor 2 pointed at /dev/null and
then removes itself. Python exceptions raised by the import are not affected
(they are raised after stderr is restored). TF_CPP_MIN_LOG_LEVEL=0 shows
everything.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
  """Points file descriptor 2 at /dev/null for the duration."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` with the other finders and loads it silenced."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    if fullname != "tensorflow":
      return None
    uninstall()
    spec = importlib.util.find_spec(fullname)
    if spec is not None and spec.loader is not None:
      exec_module = spec.loader.exec_module

      def quiet_exec_module(module):
        with stderr_silenced():
          exec_module(module)

      spec.loader.exec_module = quiet_exec_module
    return spec


_FINDER = _QuietTensorFlowFinder()


def install():
  """Silences the first `import tensorflow` (no-op if it happened already)."""
  if "tensorflow" in sys.modules or _FINDER in sys.meta_path:
    return
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "0":
    return
  sys.meta_path.insert(0, _FINDER)


def uninstall():
  if _FINDER in sys.meta_path:
    sys.meta_path.remove(_FINDER)
