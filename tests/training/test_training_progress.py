"""Tests for sparsejax.training.progress."""

import jax.numpy as jnp

from sparsejax.training import format_duration
from sparsejax.training import Progress


class FakeClock:

  def __init__(self):
    self.t = 100.0

  def __call__(self):
    return self.t


def test_progress_reports_rate_eta_and_metrics():
  lines, clock = [], FakeClock()
  p = Progress(1000, every=100, log_fn=lines.append, time_fn=clock)
  for step in range(1, 1001):
    clock.t += 0.01  # 100 steps/s
    p.update(step, {"loss": jnp.float32(0.123456), "bytes_sent": step * 1000,
                    "k": 7})
  assert len(lines) == 10
  first = lines[0]
  assert first.startswith("step  100/1000 (10.0%)")
  assert "100 steps/s" in first
  assert "ETA 9.0s" in first
  assert "elapsed 1.0s" in first
  assert "loss=0.1235" in first and "bytes_sent=100KB" in first
  assert "k=7" in first
  assert "(100.0%)" in lines[-1] and "ETA 0.0s" in lines[-1]


def test_progress_resume_every_secs_and_force():
  lines, clock = [], FakeClock()
  p = Progress(50, every=1000, log_fn=lines.append, start=20, every_secs=5,
               unit="round", time_fn=clock)
  assert p.update(21) is None
  clock.t += 6
  line = p.update(22)
  assert line == lines[-1]
  assert line.startswith("round 22/50 (44.0%)")
  assert "0.333 rounds/s" in line  # 2 rounds in 6 s, since start=20
  assert "ETA 1m24s" in line  # 28 rounds left
  assert p.update(23, force=True) is not None
  assert p.update(50) is not None  # the last step always reports
  assert len(lines) == 3


def test_format_duration():
  assert format_duration(5.84) == "5.8s"
  assert format_duration(130) == "2m10s"
  assert format_duration(7300) == "2h01m"
  assert format_duration(float("inf")) == "?"
