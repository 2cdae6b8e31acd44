"""Faults: clients that drop out mid-round and updates with NaN/Inf."""

import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import sparsejax as sj
from tests.federated import problem

# One compiled round for all tests: dropout_rate is traced, data only shaped.
SAPEF = dict(alpha=0.5, aggregation="support")
S = problem.PER_ROUND


def test_all_dropped_leaves_model_and_clients_unchanged():
  sim = problem.simulation("sapef", **SAPEF)
  problem.run(sim, 2)
  before = problem.to_numpy(sim.state)
  assert np.any(problem.residuals(sim)["w"] != 0)
  sim.dropout_rate = 1.0
  (m, p), = problem.run(sim, 1)
  problem.assert_trees_close(sim.params, before.server.params, 0, 0)
  problem.assert_trees_close(sim.state.clients, before.clients, 0, 0)
  assert m["dropped_clients"] == S and m["rejected_clients"] == 0
  assert p["dropped"].all() and list(p["uplink_bits"]) == [0] * S
  assert m["round_uplink_bits"] == 0 and np.isnan(m["train_loss"])
  assert m["round_downlink_bits"] == S * problem.NUM_PARAMS * 32  # received
  np.testing.assert_array_equal(sj.exact(sim.state.ledger.uplink),
                                sj.exact(before.ledger.uplink))
  sim.dropout_rate = 0.0
  (m, _), = problem.run(sim, 1)
  assert m["dropped_clients"] == 0 and m["round_uplink_bits"] > 0


@pytest.mark.slow
def test_dropped_clients_are_left_out_and_keep_their_state():
  sim = problem.simulation("sapef", dropout_rate=0.5, **SAPEF)
  again = problem.simulation("sapef", dropout_rate=0.5, **SAPEF)
  mixed = 0
  for _ in range(4):
    before = problem.to_numpy(sim.state)
    (m, p), = problem.run(sim, 1)
    dropped = p["dropped"]
    problem.check_round_by_loop(sim, before, p, p["clients"][~dropped])
    assert m["dropped_clients"] == dropped.sum()
    np.testing.assert_array_equal(p["uplink_bits"] == 0, dropped)
    (_, q), = problem.run(again, 1)  # seeded per round and client
    np.testing.assert_array_equal(q["dropped"], dropped)
    mixed += 0 < dropped.sum() < S
  assert mixed


def test_non_finite_updates_are_rejected():
  poisoned = np.array([0, 2, 4, 6])  # NaN inputs, so NaN updates
  sim = problem.simulation("sapef", nan_clients=tuple(poisoned), **SAPEF)
  rejected = 0
  for _ in range(3):
    before = problem.to_numpy(sim.state)
    (m, p), = problem.run(sim, 1)
    bad = np.isin(p["clients"], poisoned)
    np.testing.assert_array_equal(p["rejected"], bad)
    assert m["rejected_clients"] == bad.sum() and m["dropped_clients"] == 0
    assert m["round_uplink_bits"] == sum(p["uplink_bits"])  # sent: counted
    problem.check_round_by_loop(sim, before, p, p["clients"][~bad])
    assert np.isfinite(m["train_loss"]) == (not bad.all())
    rejected += bad.sum()
  assert rejected
  assert np.all(np.isfinite(ravel_pytree(sim.params)[0]))
  np.testing.assert_array_equal(problem.residuals(sim)["w"][poisoned], 0.0)
