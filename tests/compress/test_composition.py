"""Compressors composed with optimizers and optax wrappers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj


def _params():
  r = np.random.default_rng(0)
  return {"kernel": jnp.asarray(r.standard_normal((4, 5)), jnp.float32),
          "bias": jnp.asarray(r.standard_normal(5), jnp.float32)}


def _grads(step):
  r = np.random.default_rng(100 + step)
  return {"kernel": jnp.asarray(r.standard_normal((4, 5)), jnp.float32),
          "bias": jnp.asarray(r.standard_normal(5), jnp.float32)}


OPTIMIZERS = {
    "sgd_momentum": lambda: optax.sgd(0.1, momentum=0.9),
    "sgd_nesterov": lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
    "lion": lambda: optax.lion(1e-3, weight_decay=0.01),
    "lamb": lambda: optax.lamb(1e-2),
}


@pytest.mark.slow
@pytest.mark.parametrize("compressor,opt", [
    *[("ef_top_k", opt) for opt in sorted(OPTIMIZERS)],
    ("ef_random_k", "adam"), ("ef_random_k", "lion"),
    ("qsgd", "sgd_nesterov"), ("qsgd", "lamb")])
def test_any_optimizer_after_a_compressor(compressor, opt):
  make = {"ef_top_k": lambda: sj.error_feedback(sj.top_k(k=3)),
          "ef_random_k": lambda: sj.error_feedback(
              sj.random_k(k=3, scope="global", seed=5)),
          "qsgd": lambda: sj.qsgd(4, seed=2)}[compressor]
  tx = optax.chain(make(), OPTIMIZERS[opt]())
  # Reference: the two transformations run by hand, one after the other.
  comp, inner = make(), OPTIMIZERS[opt]()
  params = ref_params = _params()
  state = tx.init(params)
  cs, os_ = comp.init(params), inner.init(params)
  for step in range(3):
    g = _grads(step)
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    c, cs = comp.update(g, cs, ref_params)
    u, os_ = inner.update(c, os_, ref_params)
    ref_params = optax.apply_updates(ref_params, u)
    chex.assert_trees_all_close(params, ref_params, rtol=1e-6, atol=1e-7)
  assert int(sj.comm_stats(state)["steps"]) == 3
  # The optimizer only ever saw compressed gradients: for top-k with k=3 and
  # a pure-sgd-like first step, the bias (5 entries) can't all have moved.
  chex.assert_trees_all_equal_structs(params, _params())


@pytest.mark.slow
def test_multi_steps_compresses_the_accumulated_gradient():
  ef_topk = lambda: sj.error_feedback(sj.top_k(k=2))  # pylint: disable=unnecessary-lambda-assignment
  tx = optax.MultiSteps(optax.chain(ef_topk(), optax.sgd(1.0)), every_k_schedule=2)
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update)  # MultiSteps branches with lax.cond
  u1, state = update(_grads(0), state, params)
  chex.assert_trees_all_equal(u1, jax.tree.map(jnp.zeros_like, params))
  stats = sj.comm_stats(state)
  assert int(stats["steps"]) == 0  # nothing sent on a mini-step
  u2, state = update(_grads(1), state, params)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, _grads(0), _grads(1))
  ref = ef_topk()
  sent, ref_state = ref.update(mean, ref.init(params))
  chex.assert_trees_all_close(u2, jax.tree.map(lambda s: -s, sent),
                              rtol=1e-5, atol=1e-6)
  assert int(sj.comm_stats(state)["steps"]) == 1
  chex.assert_trees_all_close(sj.residual(state), ref_state.residual,
                              rtol=1e-5, atol=1e-6)


def test_partition_compresses_kernels_not_biases():
  labels = {"kernel": "compress", "bias": "dense"}
  tx = optax.partition(
      {"compress": optax.chain(sj.error_feedback(sj.top_k(k=2)),
                               optax.sgd(1.0)),
       "dense": optax.sgd(1.0)}, labels)
  params = _params()
  state = tx.init(params)
  g = _grads(0)
  updates, state = tx.update(g, state, params)
  np.testing.assert_array_equal(updates["bias"], -g["bias"])
  assert int(np.count_nonzero(updates["kernel"])) == 2
  k = np.asarray(g["kernel"]).ravel()
  top = np.argsort(-np.abs(k), kind="stable")[:2]
  np.testing.assert_array_equal(np.asarray(updates["kernel"]).ravel()[top],
                                -k[top])
  stats = sj.comm_stats(state)
  assert float(stats["bits_sent"]) == 2 * 64  # kernels only
  np.testing.assert_allclose(float(stats["residual_norm"]) ** 2,
                             np.sum(k**2) - np.sum(k[top] ** 2), rtol=1e-5)


@pytest.mark.slow
def test_apply_if_finite_skips_bad_steps_outside():
  tx = optax.apply_if_finite(
      optax.chain(sj.error_feedback(sj.random_k(k=3)), optax.sgd(1.0)),
      max_consecutive_errors=3)
  update = jax.jit(tx.update)  # apply_if_finite branches with lax.cond
  params = _params()
  state0 = tx.init(params)
  bad = _grads(0)
  bad = {**bad, "kernel": bad["kernel"].at[1, 1].set(jnp.nan)}
  updates, state = update(bad, state0, params)
  chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
  assert int(state.notfinite_count) == 1
  chex.assert_trees_all_equal(state.inner_state, state0.inner_state)
  good, state = update(_grads(1), state, params)
  ref, _ = update(_grads(1), state0, params)
  chex.assert_trees_all_equal(good, ref)


@pytest.mark.slow
def test_jit_matches_eager():
  tx = optax.chain(sj.error_feedback(sj.random_k(k=4, scope="global")),
                   optax.adam(1e-2))
  params = _params()
  s_eager = s_jit = tx.init(params)
  step = jax.jit(tx.update)
  for i in range(3):
    u_eager, s_eager = tx.update(_grads(i), s_eager, params)
    u_jit, s_jit = step(_grads(i), s_jit, params)
    chex.assert_trees_all_close(u_eager, u_jit, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(sj.comm_stats(s_eager)["bits_sent"],
                                sj.comm_stats(s_jit)["bits_sent"])


VMAP_CASES = {
    "ef_top_k_global": lambda: sj.error_feedback(sj.top_k(k=3, scope="global")),
    "ef_random_k": lambda: sj.error_feedback(sj.random_k(k=2)),
    "ef_threshold_capacity": lambda: sj.error_feedback(
        sj.hard_threshold(0.8, capacity=0.2)),
    "ef_qsgd": lambda: sj.error_feedback(sj.qsgd(2)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VMAP_CASES))
def test_vmap_over_clients_equals_separate_runs(name):
  clients, steps = 3, 3
  tx = VMAP_CASES[name]()
  r = np.random.default_rng(1)
  params = jax.tree.map(
      lambda p: jnp.asarray(r.standard_normal((clients,) + p.shape),
                            jnp.float32), _params())
  grads = [jax.tree.map(
      lambda p: jnp.asarray(r.standard_normal(p.shape), jnp.float32), params)
           for _ in range(steps)]
  update = jax.jit(jax.vmap(tx.update))
  state = jax.vmap(tx.init)(params)
  outs = []
  for g in grads:
    out, state = update(g, state, params)
    outs.append(out)
  for c in range(clients):
    pick = lambda t: jax.tree.map(lambda x: x[c], t)  # pylint: disable=cell-var-from-loop
    s = tx.init(pick(params))
    for t, g in enumerate(grads):
      out, s = tx.update(pick(g), s, pick(params))
      chex.assert_trees_all_close(out, pick(outs[t]), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(sj.residual(s), pick(sj.residual(state)),
                                rtol=1e-5, atol=1e-6)
    assert sj.exact(s.inner_state.counters.bits) == sj.exact(
        jax.tree.map(lambda x: x[c], state.inner_state.counters.bits))
  # Clients really differ (per-client residuals, not one shared).
  res = sj.residual(state)["kernel"]
  assert not np.allclose(res[0], res[1])
