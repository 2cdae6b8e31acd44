"""Tests for sparsejax.training.progress."""

import jax.numpy as jnp
import pytest

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
  assert first.startswith("step  100/1000 | 100 steps/s | ETA 9.0s | ")
  assert "loss=0.1235" in first and "bytes=100KB" in first  # short names
  assert "k=7" in first
  assert lines[-1].startswith("step 1000/1000 |") and "ETA 0.0s" in lines[-1]


def test_eta_leaves_out_the_first_step_compilation():
  lines, clock = [], FakeClock()
  p = Progress(100, every=10, log_fn=lines.append, time_fn=clock)
  clock.t += 60.0  # the first step compiles for a minute
  p.update(1)
  for step in range(2, 11):
    clock.t += 0.1  # then 10 steps/s
    p.update(step)
  # 9 steps in 0.9 s after the first: 10 steps/s, 90 steps left.
  assert lines == ["step  10/100 | 10 steps/s | ETA 9.0s"]


def test_lines_are_short_whatever_the_metrics():
  lines, clock = [], FakeClock()
  p = Progress(100000, every=1, log_fn=lines.append, time_fn=clock,
               unit="round")
  metrics = {f"a_rather_long_metric_name_{i}": 1.0 / 7 for i in range(12)}
  metrics = {"train_loss": 0.25, "test_accuracy": 0.5, **metrics}
  for step in (1, 2):
    clock.t += 1.0
    p.update(step, metrics)
  assert all(len(line) <= 100 for line in lines)
  assert "loss=0.25 acc=0.5" in lines[-1]  # the first metrics are kept
  assert "a_rather_long_metric_name_11" not in lines[-1]
  assert Progress(10, log_fn=lines.append, max_width=60, time_fn=clock
                  ).update(10, metrics).__len__() <= 60
  with pytest.raises(ValueError, match="max_width"):
    Progress(10, max_width=10)


def test_progress_resume_every_secs_and_force():
  lines, clock = [], FakeClock()
  p = Progress(50, every=1000, log_fn=lines.append, start=20, every_secs=5,
               unit="round", time_fn=clock)
  assert p.update(21) is None  # the first step (compilation): rate starts
  clock.t += 6
  line = p.update(22)
  assert line == lines[-1]
  assert line.startswith("round 22/50 | 0.167 rounds/s")  # 1 round in 6 s
  assert "ETA 2m48s" in line  # 28 rounds left
  assert p.update(23, force=True) is not None
  assert p.update(50) is not None  # the last step always reports
  assert len(lines) == 3


def test_format_duration():
  assert format_duration(5.84) == "5.8s"
  assert format_duration(130) == "2m10s"
  assert format_duration(7300) == "2h01m"
  assert format_duration(float("inf")) == "?"
