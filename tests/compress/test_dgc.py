"""DGC against the paper's algorithm written in numpy (float64).

The reference follows the paper's conventions: worker ``k``'s share of the
summed aggregate is ``G_k = g_k / N``, clipped at ``clip_norm / sqrt(N)``;
``u = m u + G``, ``v = v + u``; the top-k of ``|v|`` is sent and zeroed in
``u`` and ``v``; the receiver applies ``w -= lr * sum_k G~_k``.
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
from sparsejax.compress.dgc import warmup_ratios

LR, MOMENTUM = 0.1, 0.9


def _reference_ratio(step, ratio, warmup_steps):
  """The paper's exponential warm-up, split into equal shares of steps."""
  ratios = []
  while 0.25 ** (len(ratios) + 1) > ratio:
    ratios.append(0.25 ** (len(ratios) + 1))
  if step >= warmup_steps or not ratios:
    return ratio
  return ratios[step * len(ratios) // warmup_steps]


class _Worker:
  """One worker of the paper's algorithm over a dict of named arrays."""

  def __init__(self, shapes):
    self.u = {n: np.zeros(s) for n, s in shapes.items()}
    self.v = {n: np.zeros(s) for n, s in shapes.items()}

  def step(self, g, ratio, scope, clip=None):
    """``G~`` for the share ``g``; ``clip``: its threshold (or None)."""
    if clip is not None:
      norm = np.sqrt(sum(np.sum(x ** 2) for x in g.values()))
      g = {n: x * min(1.0, clip / norm) for n, x in g.items()}
    sent = {}
    for n in g:
      self.u[n] = MOMENTUM * self.u[n] + g[n]
      self.v[n] = self.v[n] + self.u[n]
    groups = [[n] for n in g] if scope == "leaf" else [sorted(g)]
    for names in groups:
      flat = np.concatenate([self.v[n].ravel() for n in names])
      k = max(1, int(np.floor(ratio * flat.size)))
      mask = np.zeros(flat.size, bool)
      mask[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
      offset = 0
      for n in names:
        m = mask[offset:offset + self.v[n].size].reshape(self.v[n].shape)
        offset += self.v[n].size
        sent[n] = np.where(m, self.v[n], 0.0)
        self.v[n] = np.where(m, 0.0, self.v[n])
        self.u[n] = np.where(m, 0.0, self.u[n])
    return sent


# ------------------------------------------------------------ one worker


def _grad(params, t):
  """A gradient depending on the params and the step (float64 numpy)."""
  rng = np.random.default_rng(t)
  return {n: rng.uniform(0.5, 1.5, p.shape) * p + rng.normal(size=p.shape)
          for n, p in params.items()}


@pytest.mark.slow
@pytest.mark.parametrize("scope,clip_norm,warmup", [
    ("global", None, 0), ("leaf", None, 0), ("global", 2.0, 6),
    ("leaf", 2.5, 4)])
def test_chained_with_sgd_equals_the_papers_loop(scope, clip_norm, warmup):
  ratio, steps = 0.05, 10
  rng = np.random.default_rng(0)
  params = {"b": rng.normal(size=(30,)), "w": rng.normal(size=(12, 9))}
  tx = optax.chain(sj.dgc(ratio, momentum=MOMENTUM, clip_norm=clip_norm,
                          warmup_steps=warmup, scope=scope), optax.sgd(LR))
  p = jax.tree.map(jnp.float32, params)
  state = tx.init(p)
  update = jax.jit(tx.update)
  worker = _Worker({n: x.shape for n, x in params.items()})
  ref = dict(params)
  clipped = 0
  for t in range(steps):
    g = _grad(jax.tree.map(np.float64, p), t)
    updates, state = update(jax.tree.map(jnp.float32, g), state, p)
    p = optax.apply_updates(p, updates)
    g_ref = _grad(ref, t)
    clipped += clip_norm is not None and np.sqrt(
        sum(np.sum(x ** 2) for x in g_ref.values())) > clip_norm
    sent = worker.step(g_ref, _reference_ratio(t, ratio, warmup), scope,
                       clip_norm)
    ref = {n: ref[n] - LR * sent[n] for n in ref}
    for n in ref:
      np.testing.assert_allclose(p[n], ref[n], rtol=1e-4, atol=1e-5,
                                 err_msg=f"step {t}, leaf {n}")
  if clip_norm is not None:
    assert clipped >= 3  # the clipping is exercised
  for n in ref:  # the state is the paper's u and v
    np.testing.assert_allclose(state[0].momentum[n], worker.u[n], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(state[0].accumulation[n], worker.v[n],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_bits_are_the_sent_pairs_of_each_warmup_stage():
  ratio, warmup, n = 0.002, 8, 4000
  tx = sj.dgc(ratio, warmup_steps=warmup)
  state = tx.init(jnp.zeros(n))
  update = jax.jit(tx.update)
  rng = np.random.default_rng(1)
  total = 0
  for t in range(warmup + 2):
    out, state = update(jnp.asarray(rng.normal(size=n), jnp.float32), state)
    k = max(1, int(np.floor(_reference_ratio(t, ratio, warmup) * n)))
    assert int(jnp.sum(out != 0)) == k
    total += 64 * k  # float32 value + int32 index
    stats = sj.comm_stats(state)
    assert sj.exact(state.counters.last_bits) == 64 * k
    assert sj.exact(state.counters.bits) == total
    assert int(stats["steps"]) == t + 1
  assert warmup_ratios(ratio) == (0.25, 0.0625, 0.015625, 0.00390625)


@pytest.mark.slow
def test_momentum_masking_keeps_the_unsent_and_zeroes_the_sent():
  tx = sj.dgc(0.25, momentum=0.5)  # k = 2 of 8
  state = tx.init(jnp.zeros(8))
  g = jnp.array([1., -8., 2., 0.5, 3., -1., 0.25, 0.125])
  out, state = tx.update(g, state)
  np.testing.assert_array_equal(out, [0, -8, 0, 0, 3, 0, 0, 0])
  np.testing.assert_array_equal(state.momentum,
                                [1, 0, 2, 0.5, 0, -1, 0.25, 0.125])
  out, state = tx.update(g, state)  # u = 0.5 u + g, v = v + u
  u = np.array([1.5, -8, 3, 0.75, 3, -1.5, 0.375, 0.1875])
  v = np.array([1, 0, 2, 0.5, 0, -1, 0.25, 0.125]) + u
  top = np.argsort(-np.abs(v))[:2]
  np.testing.assert_allclose(out, np.where(np.isin(np.arange(8), top), v, 0))
  np.testing.assert_allclose(state.momentum,
                             np.where(np.isin(np.arange(8), top), 0, u))


@pytest.mark.slow
def test_clipping_of_gradients_whose_squares_overflow_float32():
  tx = sj.dgc(1.0, momentum=0.0, clip_norm=5.0)
  g = jnp.array([3e20, -4e20], jnp.float32)  # norm 5e20: squares overflow
  out, state = tx.update(g, tx.init(jnp.zeros(2)))
  np.testing.assert_allclose(out, [3.0, -4.0], rtol=1e-6)
  assert int(sj.comm_stats(state)["nonfinite_steps"]) == 0


@pytest.mark.slow
def test_non_float_leaves_travel_whole():
  tx = sj.dgc(0.5)
  params = {"w": jnp.zeros(4), "n": jnp.zeros((), jnp.int32)}
  out, state = tx.update({"w": jnp.array([1., -4., 3., 0.5]),
                          "n": jnp.array(7, jnp.int32)}, tx.init(params))
  assert int(out["n"]) == 7
  np.testing.assert_array_equal(out["w"], [0, -4, 3, 0])
  assert sj.exact(state.counters.last_bits) == 2 * 64 + 32


@pytest.mark.parametrize("kwargs,error,match", [
    ({"ratio": 0.0}, ValueError, "ratio"),
    ({"ratio": 0.1, "momentum": 1.0}, ValueError, "momentum"),
    ({"ratio": 0.1, "clip_norm": 0.0}, ValueError, "clip_norm"),
    ({"ratio": 0.1, "num_workers": 0}, ValueError, "num_workers"),
    ({"ratio": 0.1, "warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"ratio": 0.1, "warmup_steps": 2.5}, TypeError, "warmup_steps"),
    ({"ratio": 0.1, "scope": "layer"}, ValueError, "scope"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
  with pytest.raises(error, match=match):
    sj.dgc(**kwargs)


def test_updates_unlike_the_params_are_refused():
  tx = sj.dgc(0.5)
  with pytest.raises(ValueError, match="shape"):
    tx.update(jnp.ones((2, 3)), tx.init(jnp.zeros(3)))


@pytest.mark.slow
def test_same_result_under_inject_hyperparams():
  kwargs = dict(ratio=0.1, momentum=0.8, clip_norm=1.5, warmup_steps=2)
  plain = sj.dgc(**kwargs)
  injected = optax.inject_hyperparams(
      sj.dgc, static_args=sj.dgc.static_args)(**kwargs)
  x = jnp.zeros(50)
  s1, s2 = plain.init(x), injected.init(x)
  rng = np.random.default_rng(3)
  for _ in range(4):
    g = jnp.asarray(rng.normal(size=50), jnp.float32)
    o1, s1 = jax.jit(plain.update)(g, s1)
    o2, s2 = jax.jit(injected.update)(g, s2)
    np.testing.assert_array_equal(o1, o2)


@pytest.mark.slow
@pytest.mark.parametrize("clip_norm", [None, 1.0])
def test_a_nan_or_inf_step_is_skipped_and_counted(clip_norm):
  tx = sj.dgc(0.5, clip_norm=clip_norm)
  state = tx.init(jnp.zeros(4))
  _, state = tx.update(jnp.array([1., -4., 3., 0.5]), state)
  for bad in (jnp.nan, jnp.inf):
    out, skipped = tx.update(jnp.array([1., bad, 3., 0.5]), state)
    np.testing.assert_array_equal(out, np.zeros(4))
    for a, b in zip(jax.tree.leaves(skipped._replace(nonfinite_steps=0,
                                                     step=0)),
                    jax.tree.leaves(state._replace(nonfinite_steps=0,
                                                   step=0))):
      np.testing.assert_array_equal(a, b)
    assert int(sj.comm_stats(skipped)["nonfinite_steps"]) == 1
    assert int(skipped.step) == 2
  out, state = tx.update(jnp.array([1., -4., 3., 0.5]), state)
  assert np.all(np.isfinite(out)) and np.count_nonzero(out) == 2


def test_created_by_name():
  tx = sj.create_compressor({"name": "dgc", "ratio": 0.5, "momentum": 0.0})
  out, _ = tx.update(jnp.array([1., -4., 3., 0.5]), tx.init(jnp.zeros(4)))
  np.testing.assert_array_equal(out, [0, -4, 3, 0])


# ------------------------------------------------------- 8 devices


@pytest.mark.slow
def test_data_parallel_step_equals_per_worker_reference():
  ratio, warmup, clip_norm, steps = 0.05, 2, 0.3, 5
  tx = optax.chain(sj.dgc(ratio, momentum=MOMENTUM, clip_norm=clip_norm,
                          warmup_steps=warmup, axis_name="data"),
                   optax.sgd(LR))
  mesh = parallel.data_mesh(DEVICES)
  params = {"w": jnp.zeros((DIM, CLASSES)), "b": jnp.zeros(CLASSES)}
  opt_state = parallel.init_opt_state(tx, params, mesh)
  step = parallel.make_train_step(softmax_problem.loss, tx, mesh, donate=False)

  ref = jax.tree.map(np.float64, params)
  workers = [_Worker({n: x.shape for n, x in params.items()})
             for _ in range(DEVICES)]
  grad = jax.jit(jax.grad(lambda p, b: softmax_problem.loss(p, {}, b)[0]))
  rows, clipped = BATCH // DEVICES, 0
  for t in range(steps):
    batch = parallel.global_batch(softmax_problem.data(t), mesh)
    params, _, opt_state, _ = step(params, {}, opt_state, batch)
    x, y = softmax_problem.data(t)
    total = jax.tree.map(np.zeros_like, ref)
    for i, worker in enumerate(workers):
      g = jax.tree.map(np.float64, grad(
          jax.tree.map(jnp.float32, ref),
          (x[i * rows:(i + 1) * rows], y[i * rows:(i + 1) * rows])))
      share = {n: gi / DEVICES for n, gi in g.items()}
      clipped += np.sqrt(sum(np.sum(s ** 2) for s in share.values())) > (
          clip_norm / np.sqrt(DEVICES))
      sent = worker.step(share, _reference_ratio(t, ratio, warmup), "global",
                         clip_norm / np.sqrt(DEVICES))
      total = {n: total[n] + sent[n] for n in total}
    ref = {n: ref[n] - LR * total[n] for n in ref}
    got = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), params)
    for n in ref:
      np.testing.assert_allclose(got[n], ref[n], rtol=1e-4, atol=1e-6,
                                 err_msg=f"step {t}, leaf {n}")
  assert clipped >= steps  # clipping is exercised on several workers
  num = DIM * CLASSES + CLASSES
  pairs = sum(max(1, int(np.floor(_reference_ratio(t, ratio, warmup) * num)))
              for t in range(steps))
  bits = np.asarray(opt_state[0].counters.bits.lo)
  assert bits.shape == (DEVICES,) and np.all(bits == 64 * pairs)
