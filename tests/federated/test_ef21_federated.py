"""EF21 under partial participation: a per-client reference, bad input."""

import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import federated as fed
from sparsejax.feedback import estimate
from tests.federated import problem


@pytest.mark.slow
def test_ef21_fedavg_matches_per_client_reference():
  """``c_i = top_k(Delta_i - g_i)``, ``g_i += c_i``, ``G += sum_S n_i c_i /
  N``, ``w += G``; unsampled clients keep their ``g_i`` (and share of G)."""
  sim = problem.simulation("ef21_topk")
  x = problem.flat64(sim.params)
  sizes = np.asarray(sim.data.sizes, np.float64)
  g = np.zeros((problem.NUM_CLIENTS, x.size))
  big_g = np.zeros_like(x)
  seen = []
  for _ in range(4):  # 3 of 8 clients a round
    before = problem.to_numpy(sim.state)
    (metrics, per_client), = problem.run(sim, 1)
    total = np.zeros_like(x)
    for i in per_client["clients"]:
      delta = problem.local_sgd(before, sim.data, i, x) - x
      c = problem.top_k_np(delta - g[i], problem.TOP_K)
      g[i] += c
      total += sizes[i] * c
    big_g += total / sizes.sum()
    x = x + big_g
    seen.extend(per_client["clients"].tolist())
    np.testing.assert_allclose(problem.flat64(sim.params), x, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(problem.flat64(sim.state.server.estimate),
                               big_g, rtol=1e-4, atol=1e-6)
    for i in range(problem.NUM_CLIENTS):
      np.testing.assert_allclose(
          problem.flat64(problem.take_client(
              estimate(sim.state.clients.uplink), i)), g[i], rtol=1e-4,
          atol=1e-6)
    # One top-k message per client: TOP_K (value, index) pairs.
    assert list(per_client["uplink_bits"]) == [problem.TOP_K * 64] * 3
    assert metrics["residual_norm"] > 0
  # G is the size-weighted average of every client's estimate.
  np.testing.assert_allclose(big_g, sizes @ g / sizes.sum(), rtol=1e-12)
  assert len(set(seen)) < problem.NUM_CLIENTS or len(seen) > len(set(seen))


def test_ef21_fedavg_needs_mean_aggregation_and_a_compressor():
  with pytest.raises(ValueError, match=r"aggregation='mean'"):
    fed.ef21_fedavg(problem.MODEL, optax.sgd(0.1), sj.top_k(k=2),
                    aggregation="support")
  with pytest.raises(TypeError, match=r"compressor must be a sparsejax"):
    fed.ef21_fedavg(problem.MODEL, optax.sgd(0.1), optax.sgd(0.1))
