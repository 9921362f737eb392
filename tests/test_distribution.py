"""Distribution of the model code under Mirrored + XLA: noise, replica sync,
loss scaling."""

import os
import subprocess
import sys


def test_noise_and_replica_sync_under_mirrored_strategy_with_xla():
  """The distributed check (fresh process: it sets logical CPU devices)."""
  result = subprocess.run(
      [sys.executable, os.path.join(os.path.dirname(__file__),
                                    "distributed_check.py"),
       "--checks=noise,train_noisy_bn,loss_scale,bf16",
       "--jit_compile=noise,loss_scale,bf16"],
      capture_output=True, text=True, timeout=400,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert "noise: ok" in result.stdout
  assert "train_noisy_bn: ok" in result.stdout
  # fp16 + XLA on 2 replicas: an inf on one replica skips the step and halves
  # the loss scale on both; 3 steps match float32 (weights to 2e-3, losses
  # to 1%). bf16 (no loss scaling) trains.
  assert "loss_scale: ok" in result.stdout
  assert "bf16: ok" in result.stdout
