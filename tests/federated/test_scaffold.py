"""SCAFFOLD (option II): a per-client reference, its ledger, bad input."""

import jax
import numpy as np
import optax
import pytest

from experiments.federated import train
import sparsejax as sj
from sparsejax import federated as fed
from tests.federated import problem

SERVER_LR = 0.8
K_C = 5  # top-k of the compressed control variate upload
K_DOWN = 20  # global top-k of the compressed broadcast
MOMENTUM = 0.5  # of the server optimizer


def reference_round(before, data, ids, k_c=None, start=None):
  """Karimireddy et al.'s Algorithm 1, option II, client by client.

  Clients start from ``start`` (default ``x``; a compressed downlink's
  replica ``x_hat`` otherwise). ``c_i+ = c_i - c + (start - y_K) / (K lr)``;
  the client keeps ``c_i + q_i`` with ``q_i`` what it sent of
  ``c_i+ - c_i`` (top-``k_c`` or all). The server: ``c += sum n_i q_i / N``
  with ``N = sum_j n_j``, and the aggregate ``sum n_i dy_i / sum_S n_i``
  (returned; ``x += eta_g`` times it without a server optimizer).
  """
  c = problem.flat64(before.server.control)
  if start is None:
    start = problem.flat64(before.server.params)
  controls = np.stack([problem.flat64(jax.tree.map(lambda a, i=i: a[i],
                                          before.clients.control))
                       for i in range(problem.NUM_CLIENTS)])
  sizes = np.asarray(data.sizes, np.float64)
  sum_y, sum_c, weight = np.zeros_like(c), np.zeros_like(c), 0.0
  for i in ids:
    y = problem.local_sgd(before, data, i, start, correction=c - controls[i])
    new_ci = controls[i] - c + (start - y) / (problem.LOCAL_STEPS * problem.LR)
    q = new_ci - controls[i]
    if k_c is not None:
      q = problem.top_k_np(q, k_c)
    controls[i] = controls[i] + q
    sum_y, sum_c = sum_y + sizes[i] * (y - start), sum_c + sizes[i] * q
    weight += sizes[i]
  return sum_y / weight, c + sum_c / sizes.sum(), controls


def client_controls(sim):
  return np.stack([problem.flat64(jax.tree.map(lambda a, i=i: a[i],
                                      sim.state.clients.control))
                   for i in range(problem.NUM_CLIENTS)])


@pytest.mark.slow
@pytest.mark.parametrize("k_c", [None, K_C])
def test_scaffold_matches_per_client_reference(k_c):
  options = dict(server_lr=SERVER_LR)
  if k_c is not None:
    options["control_compressor"] = sj.top_k(k=K_C, scope="global")
  sim = problem.simulation("scaffold", **options)
  dense = problem.NUM_PARAMS * 32
  seen = []
  for _ in range(3):  # partial participation: 3 of 8 clients a round
    before = problem.to_numpy(sim.state)
    (metrics, per_client), = problem.run(sim, 1)
    ids = per_client["clients"]
    seen.extend(ids.tolist())
    agg, c, controls = reference_round(before, sim.data, ids, k_c)
    x = problem.flat64(before.server.params) + SERVER_LR * agg
    np.testing.assert_allclose(problem.flat64(sim.params), x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(problem.flat64(sim.state.server.control), c,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(client_controls(sim), controls, rtol=1e-4,
                               atol=1e-6)
    # c is the size-weighted average of the c_i, also with a compressed upload.
    sizes = np.asarray(sim.data.sizes, np.float64)
    np.testing.assert_allclose(c, sizes @ controls / sizes.sum(), rtol=1e-4,
                               atol=1e-6)
    # Two uplink messages (dy dense, dc dense or top-k pairs); x and c down.
    control_bits = dense if k_c is None else K_C * 64
    assert list(per_client["uplink_bits"]) == [dense + control_bits] * 3
    assert metrics["round_downlink_bits"] == 3 * 2 * dense
  assert len(seen) > len(set(seen))  # some client came back with its c_i
  assert np.max(np.abs(c)) > 0


@pytest.mark.slow
def test_scaffold_with_server_momentum_and_compressed_downlink_matches_reference():
  """Clients start from the replica ``x_hat += top_k(x - x_hat)``; the
  server's ``x`` moves by SGD with momentum on the negated aggregate."""
  sim = problem.simulation(
      "scaffold", downlink=sj.top_k(k=K_DOWN, scope="global"),
      server_opt=optax.sgd(SERVER_LR, momentum=MOMENTUM))
  x = problem.flat64(sim.params)
  x_hat, trace = x.copy(), np.zeros_like(x)
  dense = problem.NUM_PARAMS * 32
  for _ in range(3):
    before = problem.to_numpy(sim.state)
    (metrics, per_client), = problem.run(sim, 1)
    x_hat = x_hat + problem.top_k_np(x - x_hat, K_DOWN)
    agg, c, controls = reference_round(before, sim.data, per_client["clients"],
                                       start=x_hat)
    trace = -agg + MOMENTUM * trace  # optax.sgd's momentum on -agg
    x = x - SERVER_LR * trace
    np.testing.assert_allclose(problem.flat64(sim.state.server.downlink.model),
                               x_hat, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(problem.flat64(sim.params), x, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(problem.flat64(sim.state.server.control), c,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(client_controls(sim), controls, rtol=1e-4,
                               atol=1e-6)
    # The model goes down as K_DOWN (value, index) pairs, c densely.
    assert metrics["round_downlink_bits"] == problem.PER_ROUND * (
        K_DOWN * 64 + dense)


def test_scaffold_server_opt_refuses_a_server_lr():
  with pytest.raises(ValueError, match=r"server_lr applies only"):
    fed.scaffold(problem.MODEL, optax.sgd(0.1), local_lr=0.1, server_lr=0.5,
                 server_opt=optax.adam(1e-2))


@pytest.mark.slow
def test_scaffold_without_correction_at_first_round_is_fedavg():
  """All control variates start at 0: round 1 is FedAvg's."""
  a = problem.simulation("scaffold")
  b = problem.simulation("fedavg")
  problem.run(a, 1)
  problem.run(b, 1)
  problem.assert_trees_close(a.params, b.params)


def test_bad_scaffold_arguments_raise():
  sgd = optax.sgd(0.1)
  with pytest.raises(ValueError, match=r"local_lr must be"):
    fed.scaffold(problem.MODEL, sgd, local_lr=0.0)
  with pytest.raises(ValueError, match=r"aggregation='mean'"):
    fed.scaffold(problem.MODEL, sgd, local_lr=0.1, aggregation="support")
  with pytest.raises(TypeError, match=r"control_compressor must be"):
    fed.scaffold(problem.MODEL, sgd, local_lr=0.1,
                 control_compressor=optax.sgd(1.0))
  with pytest.raises(ValueError, match=r"local_steps"):
    fed.scaffold(problem.MODEL, sgd, local_lr=0.1, local_steps=0)


@pytest.mark.slow
def test_experiment_method_config_builds_compressed_scaffold():
  _, per_client = problem.config_round({
      "algorithm": "scaffold",
      "control_compressor": {"name": "top_k", "k": K_C, "scope": "global"}})
  dense = problem.NUM_PARAMS * 32
  assert list(per_client["uplink_bits"]) == [dense + K_C * 64] * 2


@pytest.mark.parametrize("momentum,steps", [(0.0, 5), (0.9, 10), (0.5, 3)])
def test_momentum_gain_is_the_displacement_of_heavy_ball_sgd(momentum,
                                                             steps):
  """K steps of optax SGD with fresh momentum on a constant gradient move
  ``lr * K * gain`` (what option II divides by)."""
  opt = optax.sgd(0.1, momentum=momentum or None)
  g, y = np.float32(2.0), np.zeros(())
  state = opt.init(y)
  for _ in range(steps):
    u, state = opt.update(g, state)
    y = y + np.asarray(u)
  gain = train.momentum_gain(momentum, steps)
  np.testing.assert_allclose(-y, 0.1 * steps * gain * g, rtol=1e-5)
