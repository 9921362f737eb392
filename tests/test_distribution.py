"""Distribution of the model code: noise and replica sync under Mirrored + XLA."""

import os
import subprocess
import sys


def test_noise_and_replica_sync_under_mirrored_strategy_with_xla():
  """The distributed check (fresh process: it sets logical CPU devices)."""
  result = subprocess.run(
      [sys.executable, os.path.join(os.path.dirname(__file__),
                                    "distributed_check.py"),
       "--checks=noise,train_noisy_bn", "--jit_compile=noise"],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert "noise: ok" in result.stdout
  assert "train_noisy_bn: ok" in result.stdout
