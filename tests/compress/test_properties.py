"""Mathematical properties: EF invariant, contractivity, unbiasedness."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax.compress.base import CompressorState


# ---------------------------------------------------------- EF invariant

INVARIANT_COMPRESSORS = {
    "top_k_leaf": lambda: sj.top_k(0.1),
    "top_k_global": lambda: sj.top_k(k=2, scope="global"),
    "blockwise": lambda: sj.blockwise_top_k(0.2, block_size=3),
    "threshold_capacity": lambda: sj.hard_threshold(1.0, capacity=0.2),
    "random_k_scaled": lambda: sj.random_k(k=2, scaled=True, seed=3),
    "qsgd": lambda: sj.qsgd(2),
    "scaled_sign": sj.scaled_sign,
}


# Multi-leaf shapes, different for each compressor (so many shapes are
# covered without compiling every compressor for every shape).
INVARIANT_SHAPES = [
    {"a": (3, 4), "b": (5,)},
    {"a": (2, 3, 2), "b": (1,), "c": (7,)},
    {"a": (9,), "b": (2, 2)},
    {"a": (1, 6), "b": (4, 3), "c": (2,)},
]
N_SEEDS = 16


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(INVARIANT_COMPRESSORS))
def test_error_feedback_invariant(name):
  """sum_t m_t + e_T == sum_t g_t (carry=1, eta=1) on N_SEEDS random runs."""
  i = sorted(INVARIANT_COMPRESSORS).index(name)
  shapes = INVARIANT_SHAPES[i % len(INVARIANT_SHAPES)]
  rng = np.random.default_rng(i)
  steps = 12
  # Per seed: a random scale per leaf and heavy tails on odd seeds.
  def draw(shape):
    g = rng.standard_normal((N_SEEDS, steps) + shape)
    g[1::2] = rng.standard_cauchy((N_SEEDS // 2, steps) + shape)
    scale = 10.0 ** rng.uniform(-3, 3, size=(N_SEEDS,) + (1,) * (len(shape) + 1))
    return jnp.asarray(g * scale, jnp.float32)
  grads = {k: draw(s) for k, s in shapes.items()}
  params = {k: jnp.zeros(s) for k, s in shapes.items()}
  tx = sj.error_feedback(INVARIANT_COMPRESSORS[name]())

  @jax.jit
  @jax.vmap
  def run(grads):
    def body(state, g):
      out, state = tx.update(g, state, params)
      return state, out
    return jax.lax.scan(body, tx.init(params), grads)

  state, outs = run(grads)
  res = jax.tree.map(lambda e: np.asarray(e, np.float64), sj.residual(state))
  # fp32 rounding bound per entry: a few ulps of every magnitude involved at
  # every step (scaled random-k under EF has a large, growing residual).
  eps = 4 * steps * np.finfo(np.float32).eps
  for key in shapes:
    o = np.asarray(outs[key], np.float64)
    g = np.asarray(grads[key], np.float64)
    mag = np.abs(o).sum(1) + np.abs(g).sum(1) + np.abs(res[key])
    assert np.all(np.abs(o.sum(1) + res[key] - g.sum(1)) <= eps * mag)
  # Something was actually held back in every run.
  assert np.all(np.asarray(state.total_error) > 0)
  # residual_sq_norm is ||e_T||^2.
  sq = sum(np.sum(np.square(r.reshape(N_SEEDS, -1)), 1) for r in res.values())
  np.testing.assert_allclose(np.asarray(state.residual_sq_norm), sq,
                             rtol=1e-4)


# ---------------------------------------------------------- contractivity

SHAPES = {"a": (3, 5), "b": (7,), "c": (2, 2, 2)}
BATCH = 64


def _batch_trees(seed):
  """BATCH random trees of SHAPES (half Gaussian, half heavy-tailed)."""
  rng = np.random.default_rng(seed)
  half = BATCH // 2
  return {k: jnp.asarray(np.concatenate(
      [rng.standard_normal((half,) + s),
       rng.standard_cauchy((half,) + s)]), jnp.float32)
          for k, s in SHAPES.items()}


def _apply(tx, trees):
  """tx.update on each tree of a batch (one jit)."""
  return jax.tree.map(np.asarray, jax.jit(jax.vmap(
      lambda t: tx.update(t, tx.init(t))[0]))(trees))


def _sq_rows(x):
  x = np.asarray(x, np.float64)
  return np.sum(np.square(x.reshape(x.shape[0], -1)), axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.05, 0.3, 0.7, 1.0])
def test_top_k_leaf_contractive(ratio):
  trees = _batch_trees(int(ratio * 100))
  out = _apply(sj.top_k(ratio), trees)
  for key, x in trees.items():
    x, o = np.asarray(x), out[key]
    d = x[0].size
    k = max(1, math.floor(ratio * d))
    assert np.all(_sq_rows(x - o) <= (1 - k / d) * _sq_rows(x) * (1 + 1e-6))
    # and it is *top*-k: kept entries unchanged, none smaller than a dropped.
    a, kept = np.abs(x).reshape(BATCH, -1), (o != 0).reshape(BATCH, -1)
    assert np.all(kept.sum(1) == k)
    np.testing.assert_array_equal(o[o != 0], x[o != 0])
    assert np.all(np.where(kept, -np.inf, a).max(1)
                  <= np.where(kept, a, np.inf).min(1))


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 5, 17, 30])
def test_top_k_global_contractive(k):
  trees = _batch_trees(k)
  out = _apply(sj.top_k(k=k, scope="global"), trees)
  d = sum(math.prod(s) for s in SHAPES.values())  # 30
  err = sum(_sq_rows(np.asarray(trees[key]) - out[key]) for key in SHAPES)
  norm = sum(_sq_rows(trees[key]) for key in SHAPES)
  assert np.all(err <= (1 - k / d) * norm * (1 + 1e-6))
  nnz = sum((out[key] != 0).reshape(BATCH, -1).sum(1) for key in SHAPES)
  assert np.all(nnz == k)
  if k < d:  # global, not per leaf: some batch rows keep a leaf wholly dense
    # or wholly empty, which a per-leaf rule would not do.
    per_leaf = [(out[key] != 0).reshape(BATCH, -1).sum(1) for key in SHAPES]
    assert not all(np.all(p == per_leaf[0]) for p in per_leaf)


@pytest.mark.slow
@pytest.mark.parametrize("n,block_size,ratio", [
    (29, 4, 0.25), (40, 8, 0.1), (17, 5, 0.5), (9, 9, 0.3)])
def test_blockwise_top_k_contractive_per_block(n, block_size, ratio):
  # Each block keeps its top ceil(k / num_blocks) entries, so the error is at
  # most (1 - k_per_block / block_size) ||x||^2 (not necessarily 1 - k/d).
  x = np.random.default_rng(n).standard_normal((BATCH, n)).astype(np.float32)
  tx = sj.blockwise_top_k(ratio, block_size=block_size)
  o = _apply(tx, jnp.asarray(x))
  _, kb = sj.kernels.blockwise_layout(n, max(1, math.floor(ratio * n)),
                                      block_size)
  assert np.all(_sq_rows(x - o) <= (1 - kb / block_size) * _sq_rows(x)
                * (1 + 1e-6))
  for start in range(0, n, block_size):  # exact top-kb inside every block
    blk = np.abs(x[:, start:start + block_size])
    kept = o[:, start:start + block_size] != 0
    assert np.all(kept.sum(1) == min(kb, blk.shape[1]))
    assert np.all(np.where(kept, -np.inf, blk).max(1)
                  <= np.where(kept, blk, np.inf).min(1))
  np.testing.assert_array_equal(o[o != 0], x[o != 0])


@pytest.mark.slow
def test_hard_threshold_keeps_exactly_entries_at_or_above():
  t = 0.75  # exactly representable
  trees = _batch_trees(4)
  # Put entries exactly on the threshold (both signs).
  trees["b"] = trees["b"].at[:, 0].set(t).at[:, -1].set(-t)
  out = _apply(sj.hard_threshold(t), trees)
  d = sum(math.prod(s) for s in SHAPES.values())
  err = 0
  for key, x in trees.items():
    x, o = np.asarray(x), out[key]
    keep = np.abs(x) >= t
    assert keep.any() and (~keep).any()
    np.testing.assert_array_equal(o[keep], x[keep])
    np.testing.assert_array_equal(o[~keep], 0)
    err = err + _sq_rows(x - o)
  assert np.all(err <= d * t * t)


@pytest.mark.slow
def test_hard_threshold_capacity_keeps_lowest_indices_and_rest_in_residual():
  x = jnp.asarray([3.0, 0.1, -2.0, 5.0, 0.2, 1.0, -4.0, 0.3], jnp.float32)
  tx = sj.error_feedback(sj.hard_threshold(1.0, capacity=0.25))  # 2 slots
  out, state = tx.update(x, tx.init(x))
  np.testing.assert_array_equal(out, [3.0, 0, -2.0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(sj.residual(state), np.asarray(x) - out)
  assert int(sj.comm_stats(state)["overflow"]) == 3


# ------------------------------------------------- randomised compressors

N_KEYS = 4096


def _samples(tx, x, n=N_KEYS):
  """C(x) for n independent keys (vmapped over the PRNG key)."""
  keys = jax.random.split(jax.random.key(1234), n)
  base = tx.init(x)

  @jax.jit
  def one(key):
    return tx.update(x, CompressorState(base.counters, key))[0]
  return np.asarray(jax.vmap(one)(keys), np.float64)


def _assert_mean_close(samples, target, n_se=5.0):
  """|mean - target| <= n_se standard errors (+ float slack) per entry.

  With 4096 fixed keys and <= 20 entries, a correct unbiased estimator fails
  a 5-sigma check with probability below 1e-4 (and the keys are fixed, so
  the outcome is deterministic).
  """
  mean = samples.mean(0)
  se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
  assert np.all(np.abs(mean - target) <= n_se * se + 1e-6), (mean, target, se)


X = jnp.asarray(np.random.default_rng(7).standard_normal(20), jnp.float32)


@pytest.mark.slow
def test_scaled_random_k_unbiased():
  s = _samples(sj.random_k(k=4, scaled=True), X)
  _assert_mean_close(s, np.asarray(X, np.float64))
  # Every sample has exactly k non-zeros, each equal to x_i * d / k.
  assert np.all(np.count_nonzero(s, axis=1) == 4)
  nz = s != 0
  np.testing.assert_allclose(s[nz], (np.broadcast_to(X, s.shape) * 5)[nz],
                             rtol=1e-6)


@pytest.mark.slow
def test_unscaled_random_k_contractive_in_expectation_and_biased():
  s = _samples(sj.random_k(k=4), X)
  x = np.asarray(X, np.float64)
  # E[C(x)] = (k/d) x: biased, so the unbiasedness check must reject it.
  _assert_mean_close(s, 0.2 * x)
  with pytest.raises(AssertionError):
    _assert_mean_close(s, x)
  # E||x - C(x)||^2 = (1 - k/d)||x||^2, checked within 5 standard errors.
  err = np.sum((x - s) ** 2, axis=1)
  se = err.std(ddof=1) / np.sqrt(err.size)
  assert abs(err.mean() - 0.8 * np.sum(x**2)) <= 5 * se
  assert np.all(err <= np.sum(x**2) + 1e-5)  # never expands


@pytest.mark.slow
@pytest.mark.parametrize("levels", [1, 3, 200])
def test_qsgd_unbiased_and_on_the_grid(levels):
  s = _samples(sj.qsgd(levels), X)
  x = np.asarray(X, np.float64)
  _assert_mean_close(s, x)
  norm = np.linalg.norm(x)
  # Every value is norm * sign(x_i) * l / levels, l within one of s|x_i|/norm.
  lv = s / norm * levels
  np.testing.assert_allclose(lv, np.round(lv), atol=2e-3 * max(1, levels / 50))
  assert np.all(np.sign(s) * np.sign(x) >= 0)
  exact = np.abs(x) / norm * levels
  assert np.all(np.abs(np.abs(np.round(lv)) - exact) < 1 + 1e-4)


@pytest.mark.slow
def test_scaled_random_k_global_unbiased():
  tree = {"a": X[:12].reshape(3, 4), "b": X[12:]}
  tx = sj.random_k(k=5, scaled=True, scope="global")
  keys = jax.random.split(jax.random.key(99), N_KEYS)
  base = tx.init(tree)
  out = jax.jit(jax.vmap(lambda k: tx.update(
      tree, CompressorState(base.counters, k))[0]))(keys)
  flat = np.concatenate([np.asarray(out["a"]).reshape(N_KEYS, -1),
                         np.asarray(out["b"])], axis=1).astype(np.float64)
  _assert_mean_close(flat, np.asarray(X, np.float64))
  assert np.all(np.count_nonzero(flat, axis=1) == 5)


def test_random_k_state_key_advances():
  tx = sj.random_k(k=3)
  state = tx.init(X)
  out1, state = tx.update(X, state)
  out2, state = tx.update(X, state)
  assert not np.array_equal(np.asarray(out1) != 0, np.asarray(out2) != 0)
  # Same seed, same sequence; other seed, other sequence.
  again, _ = tx.update(X, tx.init(X))
  np.testing.assert_array_equal(again, out1)
  other, _ = sj.random_k(k=3, seed=1).update(X, sj.random_k(k=3, seed=1).init(X))
  assert not np.array_equal(np.asarray(other) != 0, np.asarray(out1) != 0)


def test_random_k_message_regenerates_indices_from_key():
  tx = sj.random_k(k=6)
  message, _ = tx.encode(X, tx.init(X))
  dense = np.asarray(sj.decode(message))
  idx = np.asarray(sj.compress.messages.random_indices(
      jax.random.wrap_key_data(message.key_data), X.size, 6))
  assert len(set(idx.tolist())) == 6
  np.testing.assert_array_equal(dense[idx], np.asarray(X)[idx])
  assert np.count_nonzero(dense) == 6


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(7,), (3, 5)])
def test_scaled_sign_matches_formula(shape):
  x = jnp.asarray(np.random.default_rng(sum(shape)).standard_normal(shape),
                  jnp.float32)
  tree = {"x": x, "y": 3.0 * x[..., :2]}
  out, _ = sj.scaled_sign().update(tree, sj.scaled_sign().init(None))
  for key, leaf in tree.items():
    a = np.asarray(leaf, np.float64)
    np.testing.assert_allclose(out[key], np.sign(a) * np.abs(a).mean(),
                               rtol=1e-6)
  # sign(0) is sent as +: the documented encoding of a zero entry.
  z = jnp.asarray([0.0, -2.0, 1.0])
  tx = sj.scaled_sign()
  np.testing.assert_allclose(tx.update(z, tx.init(z))[0], [1.0, -1.0, 1.0])


@pytest.mark.slow
def test_scaled_sign_contractive():
  trees = _batch_trees(5)
  out = _apply(sj.scaled_sign(), trees)
  for key, x in trees.items():
    a, o = np.asarray(x, np.float64), np.asarray(out[key], np.float64)
    d = a[0].size
    l1 = np.abs(a.reshape(BATCH, -1)).sum(1)
    # ||x - C(x)||^2 = ||x||^2 - ||x||_1^2 / d <= (1 - 1/d) ||x||^2.
    np.testing.assert_allclose(_sq_rows(a - o), _sq_rows(a) - l1**2 / d,
                               rtol=1e-4, atol=1e-6)
    assert np.all(_sq_rows(a - o) <= (1 - 1 / d) * _sq_rows(a) * (1 + 1e-5))
