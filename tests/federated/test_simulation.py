"""The engine: backends agree, sampling, padding, ledger, resume, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax import federated as fed
from sparsejax import parallel
from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.accounting import find_nodes
from sparsejax.federated import aggregation
from sparsejax.federated import simulation
from sparsejax.training import Checkpointer
from tests.federated import problem


def _rounds_agree(a, b, rounds=3):
  ra, rb = problem.run(a, rounds), problem.run(b, rounds)
  for (ma, pa), (mb, pb) in zip(ra, rb):
    np.testing.assert_array_equal(pa["clients"], pb["clients"])
    np.testing.assert_array_equal(pa["uplink_bits"], pb["uplink_bits"])
    assert ma.keys() == mb.keys()
    for k in ma:
      assert ma[k] == pytest.approx(mb[k], rel=1e-5, abs=1e-6), k
  problem.assert_trees_close(a.state, b.state)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    dict(mesh="4 devices"),           # S = 3 padded to 4, one client per device
    dict(client_batch_size=2),        # lax.map over chunks of 2 clients
    dict(unroll=1),                   # local steps in a loop, not unrolled
])
def test_backends_match_vmap(backend):
  if "mesh" in backend:
    backend = dict(mesh=fed.client_mesh(4))
  # With faults: a client dropping out at random, client 1's updates NaN.
  options = dict(alpha=0.5, aggregation="support", dropout_rate=0.3,
                 nan_clients=(1,))
  _rounds_agree(problem.simulation("sapef", **options),
                problem.simulation("sapef", **options, **backend))


@pytest.mark.slow
def test_vmap_matches_python_loop_over_clients():
  sim = problem.simulation("sapef", alpha=0.5, aggregation="support")
  before = problem.to_numpy(sim.state)
  (_, per_client), = problem.run(sim, 1)
  problem.check_round_by_loop(sim, before, per_client, per_client["clients"])


def test_sampling_distinct_deterministic_uniform():
  sim = problem.simulation("fedavg")
  picks = [p["clients"] for _, p in problem.run(sim, 300)]
  for ids in picks:
    assert len(set(ids.tolist())) == problem.PER_ROUND
    assert ids.min() >= 0 and ids.max() < problem.NUM_CLIENTS
  counts = np.bincount(np.concatenate(picks), minlength=problem.NUM_CLIENTS)
  expected = 300 * problem.PER_ROUND / problem.NUM_CLIENTS
  assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts
  again = [p["clients"] for _, p in problem.run(problem.simulation("fedavg"), 3)]
  np.testing.assert_array_equal(np.stack(again), np.stack(picks[:3]))
  other = [p["clients"] for _, p in
           problem.run(problem.simulation("fedavg", seed=1), 3)]
  assert not np.array_equal(np.stack(other), np.stack(picks[:3]))


@pytest.mark.slow
def test_local_batches_use_valid_examples_only():
  row = jnp.array([7, 3, 9, 5, -1, -1, -1])
  ids = simulation.local_batches(jax.random.key(0), row, 4, 3, 4)
  assert ids.shape == (3, 4)
  assert set(np.asarray(ids[0]).tolist()) == {7, 3, 9, 5}  # an epoch first
  assert set(np.asarray(ids).ravel().tolist()) <= {7, 3, 9, 5}


def test_padding_never_contributes():
  """Point every padded slot at the garbage example (x = 1e4): no change."""
  clean, dirty = problem.simulation("fedavg"), problem.simulation("fedavg")
  d = dirty.data
  valid = jnp.arange(d.indices.shape[1])[None, :] < d.sizes[:, None]
  assert not np.all(valid)
  dirty.data = d._replace(indices=jnp.where(valid, d.indices, 0))
  problem.run(clean, 3)
  problem.run(dirty, 3)
  problem.assert_trees_close(clean.params, dirty.params, 0, 0)


def test_ledger_dense_fedavg():
  sim = problem.simulation("fedavg")
  dense = problem.NUM_PARAMS * 32
  total = 0
  for m, p in problem.run(sim, 3):
    assert m["round_uplink_bits"] == problem.PER_ROUND * dense
    assert m["round_downlink_bits"] == problem.PER_ROUND * dense
    assert list(p["uplink_bits"]) == [dense] * problem.PER_ROUND
    total += m["round_uplink_bits"]
    assert m["uplink_bits"] == total and m["downlink_bits"] == total
    assert m["uplink_bytes"] == total / 8
  ledger = sim.state.ledger
  rounds = np.asarray(ledger.rounds)
  np.testing.assert_array_equal(
      sj.exact(ledger.uplink), rounds * dense)


def test_ledger_top_k_global():
  sim = problem.simulation("ef_topk")
  for m, p in problem.run(sim, 2):
    assert m["round_uplink_bits"] == problem.PER_ROUND * problem.TOP_K * 64
    assert sum(p["uplink_bits"]) == m["round_uplink_bits"]
  counters = sim.state.clients.uplink.inner_state.counters  # the compressor's
  np.testing.assert_array_equal(
      sj.exact(counters.bits),
      sj.exact(sim.state.ledger.uplink))


def test_uplink_counted_once_by_the_compressors():
  """The ledger holds what the uplink compressors counted, also for updates
  the engine rejects: error feedback sends nothing for a NaN input (its
  counters stay), although its zeroed dense message has a size."""
  poisoned = (0, 2, 4, 6)
  sim = problem.simulation("ef_identity", nan_clients=poisoned)
  dense = problem.NUM_PARAMS * 32
  rejected = 0
  for m, p in problem.run(sim, 3):
    bad = np.isin(p["clients"], poisoned)
    assert list(p["uplink_bits"]) == list(np.where(bad, 0, dense))
    assert m["round_uplink_bits"] == dense * (~bad).sum()
    rejected += m["rejected_clients"]
  assert rejected > 0
  counters = find_nodes(sim.state.clients.uplink, CommCounters)
  assert len(counters) == 1
  np.testing.assert_array_equal(sj.exact(counters[0].bits),
                                sj.exact(sim.state.ledger.uplink))
  assert sj.exact(sim.state.ledger.uplink)[list(poisoned)].sum() == 0


@pytest.mark.slow
def test_exact_resume(tmp_path):
  full = problem.simulation("sapef", alpha=0.5)
  problem.run(full, 4)
  first = problem.simulation("sapef", alpha=0.5)
  problem.run(first, 2)
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(2, first.state)
    ckpt.wait()
    fresh = problem.simulation("sapef", alpha=0.5, seed=123)
    fresh.restore(ckpt.restore(2, target=fresh.state))
  assert fresh.round == 2
  list(fresh.run(4))
  assert fresh.round == 4
  problem.assert_trees_close(fresh.state, full.state, 0, 0)


@pytest.mark.slow
def test_support_aggregation_by_hand():
  tx = sj.top_k(k=2)
  state = tx.init(jnp.zeros(4))
  m1, _ = tx.encode(jnp.array([4., 0., 2., 0.1]), state)   # sends 0, 2
  m2, _ = tx.encode(jnp.array([0., 1., -6., 0.]), state)   # sends 1, 2
  messages = jax.tree.map(lambda a, b: jnp.stack([a, b]), m1, m2)
  weights = jnp.array([1., 3.])
  support = aggregation.finalize(
      aggregation.client_sums(messages, weights, "support"))
  np.testing.assert_allclose(support, [4., 1., (2. - 18.) / 4, 0.])
  mean = aggregation.finalize(
      aggregation.client_sums(messages, weights, "mean"))
  np.testing.assert_allclose(mean, [1., 0.75, (2. - 18.) / 4, 0.])


def test_bad_simulation_arguments_raise():
  algo = problem.algorithm("fedavg")
  for s in (0, problem.NUM_CLIENTS + 1):
    with pytest.raises(ValueError, match="clients_per_round"):
      fed.Simulation(algo, problem.clients(), s)
  with pytest.raises(ValueError, match="clients"):
    fed.Simulation(algo, problem.clients(), 2, mesh=parallel.data_mesh(2))
  for rate in (-0.1, 1.5):
    with pytest.raises(ValueError, match="dropout_rate"):
      fed.Simulation(algo, problem.clients(), 2, dropout_rate=rate)
  with pytest.raises(ValueError, match="client_batch_size"):
    fed.Simulation(algo, problem.clients(), 2, client_batch_size=0)
  with pytest.raises(ValueError, match="unroll"):
    fed.Simulation(algo, problem.clients(), 2, unroll=0)


@pytest.mark.slow
def test_test_metrics_and_grad_mismatch():
  x, y = problem.data(seed=5)
  sim = problem.simulation("sapef", alpha=1.0, test_data=(x[1:], y[1:]),
                           probe_size=32)
  before = sim.evaluate()
  metrics = [m for _, m in sim.run(3)]
  assert "test_accuracy" in metrics[-1]
  assert metrics[-1]["test_loss"] < before["loss"]
  assert metrics[0]["grad_mismatch"] == pytest.approx(0.0, abs=1e-9)  # e = 0
  assert metrics[-1]["grad_mismatch"] > 0.0
