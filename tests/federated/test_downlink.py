"""Compressed downlink with server-side error feedback: reference, ledger."""

import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import federated as fed
from sparsejax.training import Checkpointer
from tests.federated import problem

K_DOWN = 20  # global top-k of the broadcast
TOP_DOWN = sj.top_k(k=K_DOWN, scope="global")


@pytest.mark.slow
def test_top_k_downlink_matches_reference_loop():
  """``b = top_k(x - x_hat)``, ``x_hat += b``; clients train from ``x_hat``,
  ``x += sum n_i (y_H^i - x_hat) / sum n_i``; ``K_DOWN`` pairs per client."""
  sim = problem.simulation("fedavg", downlink=TOP_DOWN)
  x = problem.flat64(sim.params)
  x_hat = x.copy()
  ledger = np.zeros(problem.NUM_CLIENTS, np.int64)
  for _ in range(4):
    before = problem.to_numpy(sim.state)
    (metrics, per_client), = problem.run(sim, 1)
    x_hat = x_hat + problem.top_k_np(x - x_hat, K_DOWN)
    total, weight = np.zeros_like(x), 0.0
    for i in per_client["clients"]:
      n = float(sim.data.sizes[i])
      total += n * (problem.local_sgd(before, sim.data, i, x_hat) - x_hat)
      weight += n
    x = x + total / weight
    np.testing.assert_allclose(problem.flat64(sim.state.server.downlink.model), x_hat,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(problem.flat64(sim.params), x, rtol=1e-4, atol=1e-6)
    assert metrics["round_downlink_bits"] == problem.PER_ROUND * K_DOWN * 64
    ledger[per_client["clients"]] += K_DOWN * 64
  np.testing.assert_array_equal(sj.exact(sim.state.ledger.downlink), ledger)
  # The server keeps what it has not broadcast: x - x_hat.
  assert np.count_nonzero(np.abs(x - x_hat) > 1e-6) > K_DOWN


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fedavg", "ef_topk"])
def test_dense_downlink_equals_todays_broadcast(name):
  dense, plain = (problem.simulation(name, downlink=sj.no_compression()),
                  problem.simulation(name))
  for _ in range(3):
    sent = problem.to_numpy(plain.params)  # what this round broadcasts
    (m, p), = problem.run(dense, 1)
    (pm, pp), = problem.run(plain, 1)
    np.testing.assert_array_equal(p["clients"], pp["clients"])
    np.testing.assert_array_equal(p["uplink_bits"], pp["uplink_bits"])
    assert m["round_downlink_bits"] == pm["round_downlink_bits"]
    assert m["downlink_bits"] == pm["downlink_bits"]
    problem.assert_trees_close(dense.state.server.downlink.model, sent)
    problem.assert_trees_close(dense.params, plain.params)


@pytest.mark.slow
def test_exact_resume_includes_downlink_state(tmp_path):
  options = dict(alpha=0.5, downlink=TOP_DOWN,
                 server_opt=optax.sgd(1.0, momentum=0.5))
  full = problem.simulation("sapef", **options)
  problem.run(full, 4)
  first = problem.simulation("sapef", **options)
  problem.run(first, 2)
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(2, first.state)
    ckpt.wait()
    fresh = problem.simulation("sapef", seed=123, **options)
    restored = ckpt.restore(2, target=fresh.state)
  problem.assert_trees_close(restored.server.downlink,
                             first.state.server.downlink, 0, 0)
  fresh.restore(restored)
  list(fresh.run(4))
  problem.assert_trees_close(fresh.state, full.state, 0, 0)


@pytest.mark.slow
def test_experiment_method_config_compresses_the_downlink():
  metrics, _ = problem.config_round({
      "algorithm": "fedavg",
      "downlink": {"name": "top_k", "k": K_DOWN, "scope": "global"}})
  assert metrics["round_downlink_bits"] == 2 * K_DOWN * 64


def test_downlink_must_be_a_compressor():
  with pytest.raises(TypeError, match=r"downlink must be a sparsejax"):
    fed.fedavg(problem.MODEL, optax.sgd(0.1), downlink=optax.adam(1e-3))
  assert fed.fedavg(problem.MODEL, optax.sgd(0.1)).init(
      {"w": np.zeros(2)}).downlink == ()
