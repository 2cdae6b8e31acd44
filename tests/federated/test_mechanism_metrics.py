"""The gradient mismatch at ``w + a e_i`` (``Simulation(mismatch_alpha=a)``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax import federated as fed
from tests.federated import problem

PROBE = 32


def _sim(name, mismatch_alpha, **options):
  x, y = problem.data(seed=5)
  return fed.Simulation(problem.algorithm(name, **options), problem.clients(),
                        problem.PER_ROUND, test_data=(x[1:], y[1:]),
                        probe_size=PROBE, mismatch_alpha=mismatch_alpha)


def _direct_mismatch(params, residuals, ids, alpha):
  """Mean over ``ids`` of ``||g(w) - g(w + alpha e_i)||^2`` on the probe."""
  x, y = problem.data(seed=5)
  probe = {"x": jnp.asarray(x[1:1 + PROBE]), "y": jnp.asarray(y[1:1 + PROBE])}

  def grad(p):
    return jax.grad(lambda q: problem.MODEL.loss(q, probe)[0])(p)

  g_w = grad(params)
  values = []
  for i in ids:
    e = jax.tree.map(lambda r: r[i], residuals)
    g = grad(jax.tree.map(lambda w, r: w + alpha * r, params, e))
    values.append(sum(float(jnp.sum((a - b) ** 2))
                      for a, b in zip(jax.tree.leaves(g_w),
                                      jax.tree.leaves(g))))
  return np.mean(values)


@pytest.mark.slow
@pytest.mark.parametrize("name,options,alpha", [
    ("ef_topk", {}, 1.0),                # EF: 0 at its own start point
    ("sapef", {"alpha": 0.85}, 1.0),
    ("sapef", {"alpha": 0.85}, 0.5),
])
def test_mismatch_at_w_plus_alpha_e_matches_direct(name, options, alpha):
  sim = _sim(name, alpha, **options)
  problem.run(sim, 3)  # residuals are nonzero from here on
  params = problem.to_numpy(sim.params)
  residuals = problem.to_numpy(sj.residual(sim.state.clients.uplink))
  assert np.abs(residuals["w"]).sum() > 0
  metrics, per_client = sim.step(evaluate=False)
  want = _direct_mismatch(params, residuals, per_client["clients"], alpha)
  assert want > 0
  assert metrics["grad_mismatch"] == pytest.approx(want, rel=1e-4)


@pytest.mark.slow
def test_default_is_the_start_point():
  """``None``: EF starts at ``w``, so its mismatch is 0; SAEF's is not."""
  ef, saef = _sim("ef_topk", None), _sim("sapef", None, alpha=1.0)
  ef_m = [m for m, _ in problem.run(ef, 4)]
  saef_m = [m for m, _ in problem.run(saef, 4)]
  assert all(m["grad_mismatch"] == 0.0 for m in ef_m)
  assert saef_m[-1]["grad_mismatch"] > 0


def test_no_error_feedback_measures_zero():
  sim = _sim("fedavg", 1.0)
  assert all(m["grad_mismatch"] == 0.0 for m, _ in problem.run(sim, 2))
