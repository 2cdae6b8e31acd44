"""Tests for sparsejax.training.loop: interrupted runs resume exactly."""

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.training import Checkpointer
from sparsejax.training import MetricsWriter
from sparsejax.training import read_metrics
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
