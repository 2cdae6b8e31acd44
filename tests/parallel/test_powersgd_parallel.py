"""PowerSGD and signSGD majority vote in the data-parallel step, 8 devices.

The references run the workers one after the other in numpy: PowerSGD as
the paper's Algorithm 1 (``P = mean_i M_i Q``, ``P_hat = qr(P).Q``,
``Q = mean_i M_i^T P_hat``, aggregate ``P_hat Q^T``) with each worker's
error feedback ``e_i = a_i - P_hat Q_i^T``; the vote as
``sign(sum_i sign(g_i))`` with a zero sent as ``+1``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import parallel
from tests.parallel import softmax_problem
from tests.parallel.softmax_problem import BATCH, CLASSES, DEVICES, DIM

STEPS = 4
RANK, START = 2, 1  # (16 + 6) * 2 * 2 < 16 * 6: the kernel is compressed


def _params():
  return {"w": jnp.zeros((DIM, CLASSES)), "b": jnp.zeros(CLASSES)}


def _worker_grads(params, step):
  """Each worker's gradient on its rows of the global batch (float64)."""
  x, y = softmax_problem.data(step)
  rows = BATCH // DEVICES
  grad = jax.jit(jax.grad(lambda p, b: softmax_problem.loss(p, {}, b)[0]))
  return [jax.tree.map(np.float64, grad(
      params, (x[i * rows:(i + 1) * rows], y[i * rows:(i + 1) * rows])))
          for i in range(DEVICES)]


def _train(tx, steps=STEPS):
  mesh = parallel.data_mesh(DEVICES)
  params = _params()
  opt_state = parallel.init_opt_state(tx, params, mesh)
  step = parallel.make_train_step(softmax_problem.loss, tx, mesh, donate=False)
  for t in range(steps):
    batch = parallel.global_batch(softmax_problem.data(t), mesh)
    params, _, opt_state, _ = step(params, {}, opt_state, batch)
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)),
                      params), opt_state


def _device_bits(opt_state):
  bits = opt_state[0].inner_state.counters.bits
  return [sj.exact(jax.tree.map(lambda x, i=i: np.asarray(x)[i], bits))
          for i in range(DEVICES)]


def _powersgd_reference(opt, steps=STEPS):
  params = jax.tree.map(np.float64, _params())
  opt_state = opt.init(params)
  q = np.asarray(sj.powersgd(RANK).init(params).q, np.float64).reshape(
      CLASSES, RANK)
  e = [jax.tree.map(np.zeros_like, params) for _ in range(DEVICES)]
  bits = 0
  for t in range(steps):
    a = [jax.tree.map(np.add, g, ei)
         for g, ei in zip(_worker_grads(jax.tree.map(jnp.float32, params), t),
                          e)]
    agg = {"b": np.mean([ai["b"] for ai in a], axis=0)}
    sent = [{"b": ai["b"]} for ai in a]
    if t < START:  # warm-up: the kernel dense as well
      agg["w"] = np.mean([ai["w"] for ai in a], axis=0)
      for s, ai in zip(sent, a):
        s["w"] = ai["w"]
      bits += 32 * (DIM * CLASSES + CLASSES)
    else:
      p_hat = np.linalg.qr(np.mean([ai["w"] @ q for ai in a], axis=0))[0]
      local = [ai["w"].T @ p_hat for ai in a]
      q = np.mean(local, axis=0)
      agg["w"] = p_hat @ q.T
      for s, qi in zip(sent, local):
        s["w"] = p_hat @ qi.T
      bits += 32 * ((DIM + CLASSES) * RANK + CLASSES)
    e = [jax.tree.map(np.subtract, ai, s) for ai, s in zip(a, sent)]
    updates, opt_state = opt.update(agg, opt_state, params)
    params = optax.apply_updates(params, updates)
  return params, e, bits


@pytest.mark.slow
def test_powersgd_with_error_feedback_matches_per_worker_reference():
  opt = optax.sgd(0.5, momentum=0.9)
  tx = optax.chain(sj.error_feedback(
      sj.powersgd(RANK, start_iter=START, axis_name="data"),
      axis_name="data"), opt)
  params, opt_state = _train(tx)
  ref, ref_e, ref_bits = _powersgd_reference(opt)
  for key in ("w", "b"):
    np.testing.assert_allclose(params[key], ref[key], rtol=1e-4, atol=1e-5)
  residual = np.asarray(sj.residual(opt_state)["w"])
  for i in range(DEVICES):
    np.testing.assert_allclose(residual[i], ref_e[i]["w"], atol=1e-5)
  # Every device sends its own factors: (n + m) * r floats.
  assert _device_bits(opt_state) == [ref_bits] * DEVICES
  # and the shared warm start is the same on every device.
  q = np.asarray(opt_state[0].inner_state.q)
  np.testing.assert_array_equal(q, np.broadcast_to(q[0], q.shape))


@pytest.mark.slow
def test_powersgd_over_devices_is_powersgd_of_the_mean():
  mesh = parallel.data_mesh(DEVICES)
  rng = np.random.default_rng(0)
  grads = [rng.normal(size=(DEVICES, 12, 10)).astype(np.float32)
           for _ in range(3)]
  tx = sj.powersgd(RANK, start_iter=0, axis_name="data")

  def run(gs):
    state = tx.init(gs[0][0])
    outs = []
    for g in gs:
      out, state = tx.update(g[0], state)
      outs.append(out)
    return outs

  outs = jax.jit(jax.shard_map(run, mesh=mesh, in_specs=jax.P("data"),
                               out_specs=jax.P(), check_vma=False))(grads)
  alone = sj.powersgd(RANK, start_iter=0)
  state = alone.init(grads[0][0])
  for g, out in zip(grads, outs):
    want, state = alone.update(jnp.mean(g, axis=0), state)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def _vote_reference(opt, beta=None, steps=STEPS):
  params = jax.tree.map(np.float64, _params())
  opt_state = opt.init(params)
  momentum = [jax.tree.map(np.zeros_like, params) for _ in range(DEVICES)]
  for t in range(steps):
    grads = _worker_grads(jax.tree.map(jnp.float32, params), t)
    if beta is not None:
      momentum = [jax.tree.map(lambda m, g: beta * m + g, m, g)
                  for m, g in zip(momentum, grads)]
      grads = momentum
    agg = jax.tree.map(
        lambda *g: np.sign(np.sum([np.where(x < 0, -1, 1) for x in g],
                                  axis=0)).astype(np.float64), *grads)
    updates, opt_state = opt.update(agg, opt_state, params)
    params = optax.apply_updates(params, updates)
  return params


@pytest.mark.slow
@pytest.mark.parametrize("beta", [None, 0.9], ids=["signsgd", "signum"])
def test_majority_vote_matches_per_worker_reference(beta):
  opt = optax.sgd(0.01)
  vote = (sj.signum(beta, axis_name="data") if beta is not None
          else sj.sign_majority_vote(axis_name="data"))
  params, opt_state = _train(optax.chain(vote, opt))
  ref = _vote_reference(opt, beta)
  for key in ("w", "b"):
    np.testing.assert_allclose(params[key], ref[key], rtol=1e-6, atol=1e-7)
  # One bit per entry per device and step.
  bits = sj.comm_stats(opt_state)["bits_sent"]
  np.testing.assert_array_equal(bits, [STEPS * (DIM + 1) * CLASSES] * DEVICES)


@pytest.mark.slow
@pytest.mark.parametrize("compressor", [
    lambda: sj.powersgd(RANK, start_iter=0, axis_name="data"),
    lambda: sj.sign_majority_vote(axis_name="data")],
                         ids=["powersgd", "majority_vote"])
def test_a_nonfinite_device_makes_every_device_skip(compressor):
  mesh = parallel.data_mesh(4)
  tx = sj.error_feedback(compressor(), axis_name="data")
  g = np.random.default_rng(1).normal(size=(4, DIM, CLASSES))
  g[2, 3, 1] = np.nan

  def run(g):
    params = {"w": g[0]}
    state = tx.init(params)
    out, state = tx.update({"w": g[0]}, state)
    return out["w"][None], state.residual["w"][None], state.nonfinite_steps[
        None]

  out, residual, skipped = jax.jit(jax.shard_map(
      run, mesh=mesh, in_specs=jax.P("data"), out_specs=jax.P("data"),
      check_vma=False))(jnp.asarray(g, jnp.float32))
  np.testing.assert_array_equal(out, 0.0)
  np.testing.assert_array_equal(residual, 0.0)
  np.testing.assert_array_equal(skipped, [1, 1, 1, 1])


@pytest.mark.parametrize("compressor", [
    lambda: sj.powersgd(RANK, start_iter=0), sj.sign_majority_vote],
                         ids=["powersgd", "majority_vote"])
def test_compressor_without_the_axis_is_refused_at_the_first_step(compressor):
  tx = optax.chain(sj.error_feedback(compressor(), axis_name="data"),
                   optax.sgd(0.1))
  with pytest.raises(ValueError, match="axis_name='data' to sj."):
    _train(tx, steps=1)
