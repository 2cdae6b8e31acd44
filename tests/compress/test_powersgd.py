"""PowerSGD against the paper's rule written in numpy (QR, not Gram-Schmidt).

Each reference step is ``P = M Q; P_hat = qr(P).Q; Q = M^T P_hat; out =
P_hat Q^T`` in float64 on the leaf viewed as ``(prod(shape[:-1]),
shape[-1])``, starting from the ``Q_0`` in the compressor's state (its
random draw is an input, not a result). ``P_hat Q^T`` does not depend on
the signs QR gives the columns, so outputs are compared directly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj


def _np_step(m, q):
  """One PowerSGD step on a float64 matrix: ``(output, next Q)``."""
  p_hat = np.linalg.qr(m @ q)[0]
  q_next = m.T @ p_hat
  return p_hat @ q_next.T, q_next


def _normal(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _q0(tx, params):
  return np.asarray(tx.init(params).q, np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("shape,rank", [((16, 12), 1), ((16, 12), 3),
                                        ((3, 3, 4, 8), 2), ((2, 10, 9), 2)])
def test_one_step_matches_numpy(shape, rank):
  g = {"w": jnp.asarray(_normal(0, shape))}
  tx = sj.powersgd(rank, start_iter=0)
  out, state = jax.jit(tx.update)(g, tx.init(g))
  n, m = int(np.prod(shape[:-1])), shape[-1]
  mat = np.asarray(g["w"], np.float64).reshape(n, m)
  want, q_next = _np_step(mat, _q0(tx, g).reshape(m, rank))
  np.testing.assert_allclose(out["w"], want.reshape(shape), rtol=1e-4,
                             atol=1e-5)
  # Q is the next warm start (up to the signs of its columns).
  np.testing.assert_allclose(np.abs(state.q.reshape(m, rank)),
                             np.abs(q_next), rtol=1e-4, atol=1e-5)
  assert out["w"].dtype == jnp.float32
  assert sj.comm_stats(state, exact=True)["bits_sent"] == 32 * (n + m) * rank


@pytest.mark.slow
def test_warm_start_over_steps_matches_numpy_and_matters():
  shape, rank, steps = (20, 10), 2, 5
  # A slowly changing gradient with a clear rank-2 part plus noise.
  base = _normal(1, (20, 2)) @ _normal(2, (2, 10)) * 3
  grads = [base + 0.3 * _normal(10 + t, shape) for t in range(steps)]
  tx = sj.powersgd(rank, start_iter=0)
  params = {"w": jnp.zeros(shape)}
  state = tx.init(params)
  q = q_fresh = _q0(tx, params).reshape(10, rank)
  update = jax.jit(tx.update)
  for g in grads:
    out, state = update({"w": jnp.asarray(g)}, state)
    want, q = _np_step(np.float64(g), q)
    cold, _ = _np_step(np.float64(g), q_fresh)
    np.testing.assert_allclose(out["w"], want, rtol=1e-4, atol=1e-4)
  # Without the warm start (Q_0 at every step) the last output differs.
  assert np.abs(cold - want).max() > 1e-2


@pytest.mark.slow
def test_repeated_steps_converge_to_the_best_rank_r_approximation():
  g = {"w": jnp.asarray(_normal(3, (24, 16)))}
  tx = sj.powersgd(2, start_iter=0)
  state = tx.init(g)
  update = jax.jit(tx.update)
  for _ in range(200):
    out, state = update(g, state)
  u, s, vt = np.linalg.svd(np.float64(g["w"]))
  best = (u[:, :2] * s[:2]) @ vt[:2]
  np.testing.assert_allclose(out["w"], best, atol=2e-3)


@pytest.mark.slow
def test_small_one_dimensional_and_integer_leaves_are_dense():
  tree = {"a_vec": jnp.asarray(_normal(4, (50,))),
          "b_small": jnp.asarray(_normal(5, (4, 3))),  # 7 * 1 * 2 >= 12
          "c_big": jnp.asarray(_normal(6, (8, 6))),    # 14 * 1 * 2 < 48
          "d_int": jnp.arange(5, dtype=jnp.int32),
          "e_bf16": jnp.asarray(_normal(7, (8, 6)), jnp.bfloat16)}
  tx = sj.powersgd(1, start_iter=0)
  out, state = tx.update(tree, tx.init(tree))
  for key in ("a_vec", "b_small", "d_int"):
    np.testing.assert_array_equal(out[key], tree[key])
  assert not np.allclose(out["c_big"], tree["c_big"])
  assert out["e_bf16"].dtype == jnp.bfloat16
  assert state.q.shape == (6 + 6,)  # the two (8, 6) leaves, rank 1
  bits = sj.comm_stats(state, exact=True)["bits_sent"]
  assert bits == 32 * 50 + 32 * 12 + 32 * 14 + 32 * 5 + 32 * 14
  # min_compression_rate=1 compresses the (4, 3) leaf too: 7 < 12.
  loose = sj.powersgd(1, start_iter=0, min_compression_rate=1.0)
  out, _ = loose.update(tree, loose.init(tree))
  assert not np.allclose(out["b_small"], tree["b_small"])


def test_warm_up_sends_dense_and_keeps_q():
  g = {"w": jnp.asarray(_normal(8, (16, 12)))}
  tx = sj.powersgd(1, start_iter=2)
  state0 = state = tx.init(g)
  update = jax.jit(tx.update)
  for _ in range(2):
    out, state = update(g, state)
    np.testing.assert_array_equal(out["w"], g["w"])
    np.testing.assert_array_equal(state.q, state0.q)
    assert sj.comm_stats(state)["last_bits"] == 32 * 16 * 12
  out, state = update(g, state)
  want, _ = _np_step(np.float64(g["w"]), _q0(tx, g).reshape(12, 1))
  np.testing.assert_allclose(out["w"], want, rtol=1e-4, atol=1e-5)
  assert sj.comm_stats(state)["last_bits"] == 32 * (16 + 12)
  assert sj.comm_stats(state, exact=True)["bits_sent"] == (
      2 * 32 * 16 * 12 + 32 * 28)


@pytest.mark.slow
def test_a_zero_gradient_keeps_the_warm_start():
  g = {"w": jnp.asarray(_normal(9, (16, 12)))}
  tx = sj.powersgd(2, start_iter=0)
  state0 = tx.init(g)
  out, state = tx.update({"w": jnp.zeros((16, 12))}, state0)
  np.testing.assert_array_equal(out["w"], 0.0)
  np.testing.assert_array_equal(state.q, state0.q)
  out, _ = tx.update(g, state)
  np.testing.assert_allclose(out["w"], tx.update(g, state0)[0]["w"])
  assert np.abs(np.asarray(out["w"])).max() > 0.1


@pytest.mark.slow
def test_under_error_feedback_matches_numpy_ef_loop():
  shape, steps = (16, 8), 6
  tx = sj.error_feedback(sj.powersgd(1, start_iter=0))
  params = {"w": jnp.zeros(shape)}
  state = tx.init(params)
  q = _q0(sj.powersgd(1, start_iter=0), params).reshape(8, 1)
  e = np.zeros(shape)
  total_in = total_out = 0
  for t in range(steps):
    g = _normal(20 + t, shape)
    out, state = tx.update({"w": jnp.asarray(g)}, state)
    a = g + e
    sent, q = _np_step(a, q)
    e = a - sent
    np.testing.assert_allclose(out["w"], sent, rtol=1e-4, atol=1e-4)
    total_in, total_out = total_in + g, total_out + np.float64(out["w"])
  np.testing.assert_allclose(sj.residual(state)["w"], e, atol=1e-4)
  # The EF invariant: everything sent plus the residual is the input.
  np.testing.assert_allclose(total_out + sj.residual(state)["w"], total_in,
                             atol=1e-4)


@pytest.mark.slow
def test_in_a_chain_with_adam_under_jit():
  params = {"w": jnp.zeros((16, 12)), "b": jnp.zeros(12)}
  tx = optax.chain(sj.error_feedback(sj.powersgd(2, start_iter=1)),
                   optax.adam(3e-2))
  target = _normal(11, (16, 2)) @ _normal(12, (2, 12))

  def loss(p):
    return jnp.mean((p["w"] + p["b"] - target) ** 2)

  @jax.jit
  def step(p, s):
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, updates), s

  state = tx.init(params)
  first = float(loss(params))
  for _ in range(150):
    params, state = step(params, state)
  assert float(loss(params)) < 0.01 * first


@pytest.mark.slow
def test_message_mean_needs_the_axis_of_the_factors():
  g = {"w": jnp.asarray(_normal(13, (16, 12)))}
  tx = sj.powersgd(1, start_iter=0)
  message, _ = tx.encode(g, tx.init(g))
  with pytest.raises(ValueError, match="axis_name='data' to sj.powersgd"):
    jax.vmap(lambda m: sj.compress.mean_over_axis(m, "data"),
             axis_name="data", axis_size=2)(
                 jax.tree.map(lambda x: jnp.stack([x, x]), message))


def test_updates_unlike_the_params_are_refused():
  tx = sj.powersgd(1, start_iter=0)
  state = tx.init({"w": jnp.zeros((16, 12))})
  with pytest.raises(ValueError, match="Q of 10 entries, the state holds 12"):
    tx.update({"w": jnp.zeros((16, 10))}, state)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(rank=0), ValueError, "rank"),
    (dict(rank=1.5), TypeError, "rank"),
    (dict(min_compression_rate=0.5), ValueError, "min_compression_rate"),
    (dict(start_iter=-1), ValueError, "start_iter"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
  with pytest.raises(error, match=match):
    sj.powersgd(**kwargs)


def test_chosen_by_config():
  tx = sj.create_compressor({"name": "powersgd", "rank": 2, "start_iter": 0})
  g = {"w": jnp.asarray(_normal(14, (16, 12)))}
  out, _ = tx.update(g, tx.init(g))
  ref = sj.powersgd(2, start_iter=0)
  np.testing.assert_array_equal(out["w"], ref.update(g, ref.init(g))[0]["w"])


@pytest.mark.slow
def test_warm_up_on_explicitly_sharded_params():
  if jax.device_count() < 8:
    pytest.skip("needs the 8 forced host devices of tests/conftest.py")
  mesh = jax.make_mesh((8,), ("x",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  g = {"w": jnp.asarray(_normal(15, (16, 8)))}
  tx = sj.error_feedback(sj.powersgd(1, start_iter=1))
  update = jax.jit(tx.update)
  ref_state, refs = tx.init(g), []
  for _ in range(2):
    out, ref_state = update(g, ref_state)
    refs.append(out["w"])
  with jax.set_mesh(mesh):
    sharded = {"w": jax.device_put(g["w"], jax.sharding.NamedSharding(
        mesh, jax.P("x", None)))}
    state = tx.init(sharded)
    for ref in refs:
      out, state = update(sharded, state)
      assert jax.typeof(out["w"]) == jax.typeof(sharded["w"])
      np.testing.assert_array_equal(out["w"], ref)


@pytest.mark.slow
def test_vmap_over_clients_equals_separate_runs():
  clients, steps = 3, 3
  tx = sj.error_feedback(sj.powersgd(2, start_iter=1))
  grads = jnp.asarray(_normal(16, (steps, clients, 16, 12)))
  update = jax.jit(jax.vmap(tx.update))
  state = jax.vmap(tx.init)({"w": grads[0]})
  outs = []
  for g in grads:
    out, state = update({"w": g}, state)
    outs.append(out["w"])
  alone = jax.jit(tx.update)
  for c in range(clients):
    s = tx.init({"w": grads[0, c]})
    for t in range(steps):
      out, s = alone({"w": grads[t, c]}, s)
      np.testing.assert_allclose(out["w"], outs[t][c], rtol=1e-5, atol=1e-5)
  assert not np.allclose(outs[-1][0], outs[-1][1])
