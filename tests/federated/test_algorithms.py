"""Algorithm semantics: equivalences and a hand-written SA-PEF reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import sparsejax as sj
from sparsejax import federated as fed
from sparsejax.federated import simulation
from tests.federated import problem

ROUNDS = 3


@pytest.mark.slow
def test_ef_with_identity_equals_fedavg():
  a, b = problem.simulation("fedavg"), problem.simulation("ef_identity")
  problem.run(a, ROUNDS)
  problem.run(b, ROUNDS)
  problem.assert_trees_close(a.params, b.params)
  np.testing.assert_array_equal(problem.residuals(b)["w"], 0.0)


@pytest.mark.slow
def test_fedprox_mu_zero_equals_fedavg():
  """The proximal term acts only in ``client_step``: compare one step."""
  avg, prox = problem.algorithm("fedavg"), problem.algorithm("fedprox", mu=0.0)
  server = avg.init(problem.MODEL.init(jax.random.key(0)))
  x, y = problem.data()
  batch = {"x": x[1:1 + problem.BATCH], "y": y[1:1 + problem.BATCH]}
  local = avg.client_init(server, avg.client_state_init(server.params))
  local = local._replace(params=jax.tree.map(lambda p: p + 0.1, local.params))
  (a, _), (b, _) = avg.client_step(local, batch), prox.client_step(local, batch)
  problem.assert_trees_close(a.params, b.params, 0, 0)


@pytest.mark.slow
def test_fedprox_keeps_local_models_closer():
  (avg, _), = problem.run(problem.simulation("fedavg"), 1)
  (prox, _), = problem.run(problem.simulation("fedprox", mu=5.0), 1)
  # Same seed: same clients and minibatches; only the proximal term differs.
  assert prox["drift"] < 0.8 * avg["drift"]


def _top_k(v, k):
  out = np.zeros_like(v)
  idx = np.argsort(-np.abs(v))[:k]
  out[idx] = v[idx]
  return out


def reference_round(before, data, ids, alpha, k=problem.TOP_K, reset_k=0):
  """SA-PEF (ALGORITHMS.md section 2) client by client, plain SGD by hand.

  ``reset_k``: also send (and aggregate) the top-``reset_k`` of the new
  residual, CSER-style.
  """
  w, unravel = ravel_pytree(before.server.params)
  w = np.asarray(w, np.float64)
  residuals = jax.vmap(lambda t: ravel_pytree(t)[0])(
      sj.residual(before.clients.uplink))
  residuals = np.asarray(residuals, np.float64)
  client_key = problem.client_key(before)
  grad = jax.jit(jax.grad(lambda p, b: problem.MODEL.loss(unravel(p), b)[0]))
  batches = jax.jit(simulation.local_batches, static_argnums=(3, 4))
  total, weight = np.zeros_like(w), 0.0
  for i in ids:
    e = residuals[i]
    examples = batches(jax.random.fold_in(client_key, i),
                                 data.indices[i], data.sizes[i],
                                 problem.LOCAL_STEPS, problem.BATCH)
    y = w + alpha * e                                       # y0 = w + alpha e
    for t in range(problem.LOCAL_STEPS):
      batch = {"x": data.x[examples[t]], "y": data.y[examples[t]]}
      y = y - problem.LR * np.asarray(grad(jnp.asarray(y, jnp.float32), batch))
    u = (y - w) + (1 - alpha) * e                           # delta from w
    sent = _top_k(u, k)
    residuals[i] = u - sent                                 # e <- u - C(u)
    if reset_k:
      reset = _top_k(residuals[i], reset_k)
      residuals[i] -= reset
      sent = sent + reset
    n = float(data.sizes[i])
    total, weight = total + n * sent, weight + n
  return w + total / weight, residuals


@pytest.mark.slow
@pytest.mark.parametrize("name,alpha", [
    ("ef_topk", 0.0),   # ef_fedavg is SA-PEF with alpha = 0
    ("sapef", 0.5),
    ("sapef", 1.0),     # SAEF
])
def test_sapef_matches_per_client_reference(name, alpha):
  sim = (problem.simulation(name) if name == "ef_topk"
         else problem.simulation(name, alpha=alpha))
  for _ in range(3):  # later rounds start from non-zero residuals
    before = problem.to_numpy(sim.state)  # the live state is donated
    before_residuals = problem.to_numpy(problem.residuals(sim))
    (_, per_client), = problem.run(sim, 1)
    ids = per_client["clients"]
    w, residuals = reference_round(before, sim.data, ids, alpha)
    np.testing.assert_allclose(ravel_pytree(sim.params)[0], w, rtol=1e-4,
                               atol=1e-6)
    got = jax.vmap(lambda t: ravel_pytree(t)[0])(problem.residuals(sim))
    np.testing.assert_allclose(got, residuals, rtol=1e-4, atol=1e-6)
    if alpha == 1.0:  # SAEF: the next start point holds the whole residual
      client = jax.tree.map(lambda x: x[ids[0]], sim.state.clients)
      start = sim.algo.client_init(sim.state.server, client).params
      np.testing.assert_allclose(ravel_pytree(start)[0],
                                 w + residuals[ids[0]], rtol=1e-4, atol=1e-6)
    unsampled = np.setdiff1d(np.arange(problem.NUM_CLIENTS), ids)
    problem.assert_trees_close(  # persisted bit for bit
        jax.tree.map(lambda r: r[unsampled], problem.residuals(sim)),
        jax.tree.map(lambda r: r[unsampled], before_residuals), 0, 0)


RESET_K = 10


@pytest.mark.slow
def test_periodic_reset_matches_per_client_reference():
  """Rounds 2 and 4 of ``reset_every=2`` also send top-10 of the residual."""
  sim = problem.simulation("sapef", alpha=0.5, reset_every=2,
                           reset_compressor=sj.top_k(k=RESET_K, scope="global"))
  plain = problem.simulation("sapef", alpha=0.5)
  reset_bits = sj.compress.message_size(sj.top_k(k=RESET_K, scope="global").encode(
      sim.params, sj.top_k(k=RESET_K, scope="global").init(sim.params))[0])[1]
  for rnd in range(1, 5):
    before = problem.to_numpy(sim.state)
    (_, per_client), = problem.run(sim, 1)
    (_, plain_per_client), = problem.run(plain, 1)
    due = rnd % 2 == 0
    w, residuals = reference_round(before, sim.data, per_client["clients"],
                                   0.5, reset_k=RESET_K if due else 0)
    np.testing.assert_allclose(ravel_pytree(sim.params)[0], w, rtol=1e-4,
                               atol=1e-6)
    got = jax.vmap(lambda t: ravel_pytree(t)[0])(problem.residuals(sim))
    np.testing.assert_allclose(got, residuals, rtol=1e-4, atol=1e-6)
    extra = sj.exact(reset_bits) if due else 0
    np.testing.assert_array_equal(  # same clients, same top-k message sizes
        per_client["uplink_bits"], plain_per_client["uplink_bits"] + extra)


@pytest.mark.slow
def test_reset_every_round_of_the_whole_residual_is_fedavg():
  """``u = delta + e``; sending ``C(u)`` and then ``u - C(u)`` sends ``delta``."""
  a = problem.simulation("fedavg")
  b = problem.simulation("ef_topk", reset_every=1,
                         reset_compressor=sj.no_compression())
  problem.run(a, ROUNDS)
  problem.run(b, ROUNDS)
  problem.assert_trees_close(a.params, b.params)
  np.testing.assert_array_equal(problem.residuals(b)["w"], 0.0)


def test_theory_alpha():
  assert fed.theory_alpha(0.125, 1) == pytest.approx(1 / (1 + 12 / 64))
  algo = fed.sapef(problem.MODEL, optax.sgd(0.01), sj.top_k(k=1),
                   alpha="auto", local_lr=0.01, smoothness=2.0, local_steps=5)
  assert isinstance(algo, fed.FederatedAlgorithm)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", float("nan")])
def test_alpha_outside_unit_interval_raises(bad):
  with pytest.raises(ValueError, match="alpha"):
    fed.sapef(problem.MODEL, optax.sgd(0.1), sj.top_k(k=1), alpha=bad)


def test_bad_algorithm_arguments_raise():
  with pytest.raises(ValueError, match="local_lr"):
    fed.sapef(problem.MODEL, optax.sgd(0.1), sj.top_k(k=1), alpha="auto")
  with pytest.raises(ValueError, match="aggregation"):
    fed.fedavg(problem.MODEL, optax.sgd(0.1), aggregation="median")
  with pytest.raises(ValueError, match="mu"):
    fed.fedprox(problem.MODEL, optax.sgd(0.1), mu=-1.0)
  with pytest.raises(ValueError, match="local_steps"):
    fed.fedavg(problem.MODEL, optax.sgd(0.1), local_steps=0)
  with pytest.raises(ValueError, match="error-feedback"):
    fed.fedavg(problem.MODEL, optax.sgd(0.1), reset_every=2)
  with pytest.raises(ValueError, match="reset_every"):
    fed.ef_fedavg(problem.MODEL, optax.sgd(0.1), sj.top_k(k=1),
                  reset_every=-1)


def test_wrong_kinds_of_arguments_are_refused_at_construction():
  from sparsejax.models.mlp import MLP  # pylint: disable=g-import-not-at-top
  sgd, top = optax.sgd(0.1), sj.top_k(k=1)
  with pytest.raises(TypeError, match=r"arguments swapped"):
    fed.sapef(problem.MODEL, local_opt=top, compressor=sgd)
  with pytest.raises(TypeError, match=r"compressor must be a sparsejax "
                     r"Compressor.*optax optimizer.*local_opt"):
    fed.sapef(problem.MODEL, sgd, optax.adam(1e-3))
  with pytest.raises(TypeError, match=r"optax optimizer"):
    fed.fedavg(problem.MODEL, sgd, compressor=optax.adam(1e-3))
  with pytest.raises(TypeError, match=r"reset_compressor"):
    fed.ef_fedavg(problem.MODEL, sgd, top, reset_every=2,
                  reset_compressor=optax.sgd(1.0))
  with pytest.raises(TypeError, match=r"Flax module.*classifier"):
    fed.sapef(MLP(features=(4,), num_classes=2), sgd, top)
  with pytest.raises(TypeError, match=r"local_opt must be"):
    fed.fedavg(problem.MODEL, 0.1)


def test_classifier_rejects_batch_norm():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class BN(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(2)(nn.BatchNorm(use_running_average=not train)(x))

  model = fed.classifier(BN(), jnp.zeros((1, 3)))
  with pytest.raises(ValueError, match="norm"):
    jax.eval_shape(model.init, jax.random.key(0))


@pytest.mark.slow
def test_classifier_loss_and_evaluate():
  from sparsejax.models.mlp import MLP  # pylint: disable=g-import-not-at-top
  model = fed.classifier(MLP(features=(8,), num_classes=3), jnp.zeros((1, 4)))
  params = jax.eval_shape(model.init, jax.random.key(0))
  batch = {"x": jnp.zeros((5, 4)), "y": jnp.zeros((5,), jnp.int32)}
  loss, metrics = jax.eval_shape(model.loss, params, batch)
  assert loss.shape == () and metrics["accuracy"].shape == ()
  per_example = jax.eval_shape(model.evaluate, params, batch)
  assert {k: v.shape for k, v in per_example.items()} == {
      "loss": (5,), "accuracy": (5,)}


@pytest.mark.slow
def test_support_of_threshold_message_is_its_kept_entries():
  x = jnp.array([0.5, -2.0, 0.1, 3.0])
  tx = sj.hard_threshold(1.0)
  message, _ = tx.encode(x, tx.init(x))
  np.testing.assert_array_equal(sj.compress.message_support(message),
                                [0.0, 1.0, 0.0, 1.0])


@pytest.mark.parametrize("name", ["fedavg", "scaffold"])
def test_ef21_uplink_is_refused(name):
  """Its messages are differences to the client's estimate, not updates."""
  algo = problem.algorithm(name, compressor=sj.ef21(sj.top_k(k=problem.TOP_K)))
  with pytest.raises(TypeError, match=r"EF21 uplink sends c_i"):
    algo.client_state_init(problem.MODEL.init(jax.random.key(0)))
