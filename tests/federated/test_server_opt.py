"""Server optimizers (FedOpt): a numpy FedAdam reference, resume, bad input."""

import jax
import ml_collections
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from experiments.federated import train
from experiments.federated.configs import smoke
import sparsejax as sj
from sparsejax import federated as fed
from sparsejax.training import Checkpointer
from tests.federated import problem

ETA, B1, B2, EPS = 0.05, 0.9, 0.99, 1e-3  # Reddi et al.'s FedAdam settings
FEDADAM = optax.adam(ETA, b1=B1, b2=B2, eps=EPS)


@pytest.mark.slow
def test_fedadam_matches_numpy_reference():
  """FedAdam: ``g = -sum_i n_i (y_H^i - w) / sum_i n_i``, Adam on ``w``."""
  sim = problem.simulation("fedavg", server_opt=FEDADAM)
  w = np.asarray(ravel_pytree(sim.params)[0], np.float64)
  m, v = np.zeros_like(w), np.zeros_like(w)
  for t in range(1, 4):
    before = problem.to_numpy(sim.state)
    (_, per_client), = problem.run(sim, 1)
    total, weight = np.zeros_like(w), 0.0
    for i in per_client["clients"]:
      n = float(sim.data.sizes[i])
      total += n * (problem.local_sgd(before, sim.data, i, w) - w)
      weight += n
    g = -total / weight
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    w = w - ETA * (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS)
    np.testing.assert_allclose(ravel_pytree(sim.params)[0], w, rtol=1e-4,
                               atol=1e-6)
    mu = ravel_pytree(sim.state.server.opt_state[0].mu)[0]
    np.testing.assert_allclose(mu, m, rtol=1e-4, atol=1e-7)
  # Not the plain step: the adaptive one moved w differently.
  plain = problem.simulation("fedavg")
  problem.run(plain, 3)
  assert np.max(np.abs(ravel_pytree(plain.params)[0] - w)) > 1e-2


@pytest.mark.slow
def test_sgd_server_opt_is_server_lr_bit_for_bit():
  a = problem.simulation("ef_topk", server_lr=0.7)
  b = problem.simulation("ef_topk", server_opt=optax.sgd(0.7))
  problem.run(a, 3)
  problem.run(b, 3)
  problem.assert_trees_close(a.params, b.params, 0, 0)


@pytest.mark.slow
def test_server_momentum_accumulates_pseudo_gradients():
  """``optax.sgd(1, momentum=b)``: ``w_t = w_{t-1} + sum_s b^(t-s) agg_s``."""
  sim = problem.simulation("fedavg", server_opt=optax.sgd(1.0, momentum=0.5))
  w = np.asarray(ravel_pytree(sim.params)[0], np.float64)
  velocity = np.zeros_like(w)
  for _ in range(3):
    before = problem.to_numpy(sim.state)
    (_, per_client), = problem.run(sim, 1)
    ids = per_client["clients"]
    n = np.asarray(sim.data.sizes)[ids].astype(np.float64)
    deltas = [problem.local_sgd(before, sim.data, i, w) - w for i in ids]
    velocity = 0.5 * velocity + np.tensordot(n, deltas, 1) / n.sum()
    w = w + velocity
    np.testing.assert_allclose(ravel_pytree(sim.params)[0], w, rtol=1e-4,
                               atol=1e-6)


@pytest.mark.slow
def test_exact_resume_includes_server_opt_state(tmp_path):
  full = problem.simulation("sapef", alpha=0.5, server_opt=FEDADAM)
  problem.run(full, 4)
  first = problem.simulation("sapef", alpha=0.5, server_opt=FEDADAM)
  problem.run(first, 2)
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(2, first.state)
    ckpt.wait()
    fresh = problem.simulation("sapef", alpha=0.5, server_opt=FEDADAM,
                               seed=123)
    restored = ckpt.restore(2, target=fresh.state)
  nu = ravel_pytree(restored.server.opt_state[0].nu)[0]
  assert np.all(np.asarray(nu) >= 0) and np.max(nu) > 0  # Adam's 2nd moment
  problem.assert_trees_close(restored.server.opt_state,
                             first.state.server.opt_state, 0, 0)
  fresh.restore(restored)
  list(fresh.run(4))
  problem.assert_trees_close(fresh.state, full.state, 0, 0)


def test_bad_server_opt_raises():
  sgd = optax.sgd(0.1)
  with pytest.raises(TypeError, match=r"server_opt is a sparsejax compressor"):
    fed.fedavg(problem.MODEL, sgd, server_opt=sj.top_k(k=1))
  with pytest.raises(TypeError, match=r"server_opt must be an optax"):
    fed.fedavg(problem.MODEL, sgd, server_opt=0.01)
  with pytest.raises(ValueError, match=r"server_lr applies only without"):
    fed.sapef(problem.MODEL, sgd, sj.top_k(k=1), server_lr=0.5,
              server_opt=optax.adam(1e-2))
  assert jax.tree.leaves(  # no server optimizer: no server optimizer state
      fed.fedavg(problem.MODEL, sgd).init({"w": np.zeros(2)}).opt_state) == []


@pytest.mark.slow
def test_experiment_method_config_names_a_server_optimizer():
  config = smoke.get_config()
  spec = {"name": "adam", "learning_rate": ETA, "b1": B1, "b2": B2,
          "eps": EPS}
  method = ml_collections.ConfigDict({"algorithm": "fedavg",
                                      "server_opt": spec})
  algo = train.build_algorithm(method, config, problem.MODEL)
  params = problem.MODEL.init(jax.random.key(0))
  update = jax.tree.map(lambda p: 0.1 * np.ones_like(p), params)
  got = algo.server_update(algo.init(params), update)
  step, _ = FEDADAM.update(jax.tree.map(lambda u: -u, update),
                           FEDADAM.init(params), params)
  problem.assert_trees_close(got.params, optax.apply_updates(params, step),
                             0, 0)
  method.server_opt.name = "lamb"
  with pytest.raises(ValueError, match=r"server_opt name must be one of"):
    train.build_algorithm(method, config, problem.MODEL)
