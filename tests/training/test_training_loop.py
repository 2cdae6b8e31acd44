"""Tests for sparsejax.training.loop: interrupted runs resume exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.training import Checkpointer
from sparsejax.training import MetricsWriter
from sparsejax.training import read_metrics
from sparsejax.training import run_logged
from sparsejax.training import run_with_checkpoints


class Interrupt(Exception):
  pass


def _init():
  return {"x": jnp.zeros((3,), jnp.float32), "rng": jax.random.key(0)}


@jax.jit
def _step(state):
  rng, sub = jax.random.split(state["rng"])
  x = state["x"] + jax.random.normal(sub, (3,))
  return {"x": x, "rng": rng}, {"norm": jnp.linalg.norm(x)}


def _run(workdir, num_steps, crash_at=None):
  ckpt = Checkpointer(f"{workdir}/ckpt", max_to_keep=2)
  writer = MetricsWriter(workdir, resume_step=ckpt.latest_step())

  def step_fn(state, i):
    if crash_at is not None and i == crash_at:
      raise Interrupt()
    return _step(state)

  def on_step(step, state, metrics):
    writer.write({"step": step, **metrics})

  try:
    return run_with_checkpoints(_init(), step_fn, num_steps, ckpt, every=4,
                                on_step=on_step)
  finally:
    ckpt.close()


@pytest.mark.slow
def test_interrupted_run_resumes_exactly(tmp_path):
  ref = _run(str(tmp_path / "ref"), 10)
  d = str(tmp_path / "run")
  try:
    _run(d, 10, crash_at=6)  # steps 1..6 logged, checkpoint at 4
  except Interrupt:
    pass
  assert [r["step"] for r in read_metrics(d)] == [1, 2, 3, 4, 5, 6]
  resumed = _run(d, 10)
  np.testing.assert_array_equal(resumed["x"], ref["x"])
  np.testing.assert_array_equal(jax.random.key_data(resumed["rng"]),
                                jax.random.key_data(ref["rng"]))
  assert read_metrics(d) == read_metrics(str(tmp_path / "ref"))
  # Already finished: restores and returns without running steps.
  again = _run(d, 10, crash_at=0)
  np.testing.assert_array_equal(again["x"], ref["x"])


class _Engine:
  """Keeps its own state, like Simulation and Market."""

  def __init__(self):
    self.state = _init()
    self.restored = None

  def step(self):
    self.state, metrics = _step(self.state)
    return metrics

  def restore(self, state):
    self.restored = state
    self.state = state


def _run_engine(workdir, num_steps, crash_at=None):
  engine, lines = _Engine(), []

  def step_fn(state, i):
    del state
    if crash_at is not None and i == crash_at:
      raise Interrupt()
    metrics = engine.step()
    return engine.state, ({"step": i + 1, **metrics} if (i + 1) % 2 == 0
                          else None)

  with Checkpointer(f"{workdir}/checkpoints") as ckpt:
    records = run_logged(workdir, ckpt, engine.state, step_fn, num_steps,
                         checkpoint_every=4, log_every=2,
                         progress_keys=("norm",), log_fn=lines.append,
                         on_restore=lambda _, s: engine.restore(s))
  return engine, records, lines


def test_run_logged_engine_resumes_exactly(tmp_path):
  ref, ref_records, lines = _run_engine(str(tmp_path / "ref"), 10)
  assert [r["step"] for r in ref_records] == [2, 4, 6, 8, 10]
  assert len(lines) == 5 and all("norm=" in line for line in lines)
  d = str(tmp_path / "run")
  with pytest.raises(Interrupt):
    _run_engine(d, 10, crash_at=6)  # records 2, 4, 6; checkpoint at 4
  engine, records, lines = _run_engine(d, 10)
  assert engine.restored is not None and "resumed after step 4" in lines[0]
  assert records == ref_records == read_metrics(d)
  np.testing.assert_array_equal(engine.state["x"], ref.state["x"])
