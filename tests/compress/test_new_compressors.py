"""TernGrad, natural compression, 1-bit SGD and EF21 against independent
NumPy references of the papers' rules (issue #18).

The randomised compressors round each entry to one of two values; over many
PRNG keys the frequency of each value and the mean of the draws are those
of the unbiased law, within 5 standard errors computed from the law's own
variance. 1-bit SGD and EF21 (with deterministic compressors) are checked
value for value.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax.compress.base import CompressorState
import compressor_cases as cases
from sparsejax.feedback import EF21State
from sparsejax.parallel import data_parallel
from sparsejax.feedback import estimate

N_KEYS = 4096
DEVICES = 8
X = np.random.default_rng(7).standard_normal(20).astype(np.float32)


def _draws(tx, x, n=N_KEYS):
  """``C(x)`` for ``n`` independent keys (vmapped over the PRNG key)."""
  x = jnp.asarray(x)
  keys = jax.random.split(jax.random.key(1234), n)
  counters = tx.init(x).counters
  out = jax.jit(jax.vmap(
      lambda key: tx.update(x, CompressorState(counters, key))[0]))(keys)
  return np.asarray(out, np.float64)


def _assert_unbiased_two_point_law(draws, low, high, x):
  """Each draw of entry ``i`` is ``low_i`` or ``high_i``, ``high_i`` with
  frequency ``p_i = (x_i - low_i) / (high_i - low_i)`` (the unbiased law),
  and the mean of the draws is ``x``: both within 5 standard errors of the
  law's own variance.

  With 4096 fixed keys and 20 entries a correct rule fails with probability
  below 1e-4 (and the keys are fixed, so the outcome is deterministic).
  """
  n = draws.shape[0]
  is_high = np.isclose(draws, high, rtol=1e-6, atol=0)
  assert np.all(is_high | np.isclose(draws, low, rtol=1e-6, atol=0))
  gap = high - low
  p = np.where(gap != 0, (x - low) / np.where(gap != 0, gap, 1), 0.0)
  np.testing.assert_array_less(np.abs(is_high.mean(0) - p),
                               5 * np.sqrt(p * (1 - p) / n) + 1e-9)
  variance = p * (1 - p) * gap**2
  np.testing.assert_array_less(np.abs(draws.mean(0) - x),
                               5 * np.sqrt(variance / n) + 1e-7 * np.abs(x)
                               + 1e-45)


def _bits(tx, x):
  message, _ = tx.encode(x, tx.init(x))
  return sj.exact(sj.compress.message_size(message)[1])


# -------------------------------------------------------------- TernGrad


def _np_clip(x, clip_sigma):
  x = x.astype(np.float64)
  if clip_sigma is None:
    return x
  bound = clip_sigma * x.std()
  return np.clip(x, -bound, bound)


@pytest.mark.slow
@pytest.mark.parametrize("clip_sigma", [None, 1.0, 2.5])
def test_terngrad_is_unbiased_on_the_ternary_grid(clip_sigma):
  x = _np_clip(X, clip_sigma)  # TernGrad is unbiased for the clipped x
  s = np.abs(x).max()
  draws = _draws(sj.terngrad(clip_sigma=clip_sigma), X)
  # 0 or s sign(x_i), the latter with probability |x_i| / s.
  _assert_unbiased_two_point_law(draws, np.zeros_like(x), s * np.sign(x), x)
  if clip_sigma == 1.0:  # clipping really happened
    assert np.sum(np.abs(x) < np.abs(X)) > 0


def test_terngrad_bits_and_message():
  x = jnp.asarray(X)
  message, _ = sj.terngrad().encode(x, sj.terngrad().init(x))
  assert isinstance(message, sj.compress.QuantizedMessage)
  assert message.levels == 1 and message.signed_levels.dtype == jnp.int8
  assert _bits(sj.terngrad(), x) == 32 + 2 * X.size


@pytest.mark.slow
@pytest.mark.parametrize("clip_sigma", [None, 2.5])
def test_terngrad_scale_does_not_overflow(clip_sigma):
  x = jnp.asarray([3e38, -3e38, 1e38, 0.0], jnp.float32)
  tx = sj.terngrad(clip_sigma=clip_sigma)
  out = np.asarray(tx.update(x, tx.init(x))[0], np.float64)
  # The bound 2.5 sigma (above float32's range here) clips nothing: the
  # entries at max|x| are always sent as themselves.
  s = np.float64(np.float32(3e38))
  np.testing.assert_array_equal(out[:2], [s, -s])
  assert out[2] in (0.0, s) and out[3] == 0


@pytest.mark.parametrize("bad,error", [(0.0, ValueError), (-1.0, ValueError),
                                       (float("nan"), ValueError),
                                       ("2.5", TypeError)])
def test_terngrad_refuses_a_bad_clip_sigma(bad, error):
  with pytest.raises(error, match="clip_sigma"):
    sj.terngrad(clip_sigma=bad)


# --------------------------------------------------- natural compression


def _np_brackets(x):
  """The powers of two ``2**a <= |x| < 2**(a+1)`` (0 and 2**-126 below
  2**-126)."""
  ax = np.abs(x.astype(np.float64))
  a = np.floor(np.log2(np.where(ax > 0, ax, 1.0)))
  low = np.where(ax >= 2.0**-126, 2.0**a, 0.0)
  high = np.where(ax >= 2.0**-126, 2.0 ** (a + 1), 2.0**-126)
  return low, high


@pytest.mark.slow
def test_natural_compression_is_unbiased_between_powers_of_two():
  x = X.astype(np.float64)
  low, high = _np_brackets(X)
  draws = _draws(sj.natural_compression(), X)
  _assert_unbiased_two_point_law(draws, np.sign(x) * low, np.sign(x) * high,
                                 x)
  ax = np.abs(x)
  variance = (ax - low) * (high - ax)
  assert np.all(variance <= x**2 / 8 + 1e-12)  # the paper's omega = 1/8


@pytest.mark.slow
def test_natural_compression_zero_powers_of_two_and_subnormals():
  exact = np.asarray([0.0, -0.0, 1.0, -0.25, 2.0**-126, 2.0**127, -2.0**-30],
                     np.float32)
  tx = sj.natural_compression()
  out = np.asarray(tx.update(jnp.asarray(exact), tx.init(exact))[0])
  np.testing.assert_array_equal(out, exact)  # nothing to round
  assert np.signbit(out[1])
  # Subnormals round between 0 and 2**-126, unbiased.
  sub = np.asarray([3e-39, -1e-39, 1e-44, 5e-39], np.float32)
  assert np.all(np.abs(sub) < 2.0**-126)
  draws = _draws(tx, sub) * 2.0**126  # in units of the smallest normal
  _assert_unbiased_two_point_law(draws, np.zeros(4), np.sign(sub),
                                 sub.astype(np.float64) * 2.0**126)


@pytest.mark.slow
def test_natural_compression_never_rounds_past_the_dtype():
  tx = sj.natural_compression()
  big = np.asarray([3.3e38, -3.0e38, 65000.0], np.float32)
  out = np.asarray(_draws(tx, big, n=64))
  assert np.all(np.isfinite(out))
  np.testing.assert_array_equal(np.abs(out[:, :2]), 2.0**127)
  half = jnp.asarray([60000.0, -40000.0, 3.0], jnp.float16)
  out = np.asarray(_draws(tx, half, n=64), np.float64)
  assert np.all(np.isfinite(out))
  np.testing.assert_array_equal(np.abs(out[:, :2]), 2.0**15)
  # Non-finite stays non-finite (EF skips such steps).
  bad = jnp.asarray([np.inf, -np.inf, np.nan], jnp.float32)
  out = np.asarray(tx.update(bad, tx.init(bad))[0])
  np.testing.assert_array_equal(np.isinf(out), True)


@pytest.mark.slow
def test_natural_compression_bits_and_message():
  x = jnp.asarray(X)
  message, _ = sj.natural_compression().encode(x, sj.natural_compression()
                                               .init(x))
  assert isinstance(message, sj.compress.PowerOfTwoMessage)
  assert message.exponent.dtype == jnp.uint8
  assert _bits(sj.natural_compression(), x) == 9 * X.size


# ------------------------------------------------------------ 1-bit SGD


def _np_onebit(x):
  x = x.astype(np.float64)
  pos = x > 0
  high = x[pos].mean() if pos.any() else 0.0
  low = x[~pos].mean() if (~pos).any() else 0.0
  return np.where(pos, high, low)


@pytest.mark.slow
@pytest.mark.parametrize("x", [
    X, np.asarray([0.0, 1.0, 0.0, -3.0, 2.0], np.float32),  # zeros: low side
    np.asarray([1.0, 2.0, 4.0], np.float32),                 # one side empty
    np.asarray([-1.0, 0.0], np.float32),
    np.asarray([3e38, 2e38, -3e38, -1e38], np.float32),      # no overflow
    np.zeros((2, 3), np.float32)], ids=["normal", "zeros", "positive",
                                        "nonpositive", "huge", "all_zero"])
def test_onebit_sends_the_mean_of_each_side(x):
  tx = sj.onebit()
  out, state = tx.update(jnp.asarray(x), tx.init(jnp.asarray(x)))
  np.testing.assert_allclose(np.asarray(out, np.float64), _np_onebit(x),
                             rtol=1e-6)
  assert sj.exact(state.counters.bits) == 64 + x.size


@pytest.mark.slow
def test_onebit_under_error_feedback_matches_a_numpy_loop():
  rng = np.random.default_rng(3)
  grads = rng.standard_normal((6, 10)).astype(np.float32)
  tx = sj.error_feedback(sj.onebit())
  state = tx.init(jnp.zeros(10))
  e = np.zeros(10)
  for g in grads:
    out, state = tx.update(jnp.asarray(g), state)
    a = g + e
    m = _np_onebit(a)
    e = a - m
    np.testing.assert_allclose(np.asarray(out), m, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(sj.residual(state)), e, rtol=1e-5,
                             atol=1e-6)


# ------------------------------------------------------------------ EF21


def _np_top_k(a, k):
  out = np.zeros_like(a)
  idx = np.argsort(-np.abs(a), kind="stable")[:k]
  out[idx] = a[idx]
  return out


# name -> (sparsejax compressor, NumPy rule on one flat leaf, bits per leaf).
EF21_COMPRESSORS = {
    "top_k": (lambda: sj.top_k(k=2), lambda a: _np_top_k(a, 2),
              lambda n: 2 * 64),
    "onebit": (sj.onebit, _np_onebit, lambda n: n + 64),
    "scaled_sign": (sj.scaled_sign,
                    lambda a: np.where(a < 0, -1.0, 1.0) * np.abs(a).mean(),
                    lambda n: n + 32),
}
SHAPES = {"b": (3,), "w": (2, 4)}


def _np_apply(rule, tree):
  return {k: rule(v.ravel()).reshape(v.shape) for k, v in tree.items()}


def _vmapped_over_clients(tx, grads, clients, *, with_params=False):
  """``tx`` jitted and vmapped over ``clients`` stacked states: the outputs
  of every step and the final stacked state."""
  params = {k: jnp.zeros((clients,) + s) for k, s in SHAPES.items()}
  update = jax.jit(jax.vmap(tx.update))
  state = jax.vmap(tx.init)(params)
  outs = []
  for step in grads:
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *step)
    out, state = (update(stacked, state, params) if with_params
                  else update(stacked, state))
    outs.append(out)
  return outs, state


def _worker_grads(workers, steps, seed=0):
  rng = np.random.default_rng(seed)
  return [[{k: rng.standard_normal(s).astype(np.float32)
            for k, s in SHAPES.items()} for _ in range(workers)]
          for _ in range(steps)]


def _np_ef21(rule, grads):
  """Per-worker EF21: c_i = C(u_i - g_i), g_i += c_i, g += mean_i c_i.

  Returns the estimate g after each step and the final g_i.
  """
  workers = len(grads[0])
  g_i = [{k: np.zeros(s) for k, s in SHAPES.items()} for _ in range(workers)]
  g = {k: np.zeros(s) for k, s in SHAPES.items()}
  outs = []
  for step in grads:
    cs = [_np_apply(rule, {k: u[k] - gi[k] for k in SHAPES})
          for u, gi in zip(step, g_i)]
    g_i = [{k: gi[k] + c[k] for k in SHAPES} for gi, c in zip(g_i, cs)]
    g = {k: g[k] + np.mean([c[k] for c in cs], 0) for k in SHAPES}
    outs.append(g)
  return outs, g_i


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EF21_COMPRESSORS))
def test_ef21_single_worker_matches_the_numpy_rule(name):
  make, rule, bits = EF21_COMPRESSORS[name]
  grads = [step[0] for step in _worker_grads(1, 5)]
  tx = sj.ef21(make())
  state = tx.init({k: jnp.zeros(s) for k, s in SHAPES.items()})
  want, _ = _np_ef21(rule, [[g] for g in grads])
  previous = {k: np.zeros(s) for k, s in SHAPES.items()}
  for g, w in zip(grads, want):
    message, _ = tx.encode(g, state)
    out, state = tx.update(g, state)
    chex.assert_trees_all_close(out, w, rtol=1e-5, atol=1e-6)
    # What is sent is c = C(u - g), the change of the estimate.
    chex.assert_trees_all_close(
        sj.decode(message), jax.tree.map(np.subtract, w, previous),
        rtol=1e-5, atol=1e-6)
    previous = w
  chex.assert_trees_all_close(estimate(state), want[-1], rtol=1e-5,
                              atol=1e-6)
  stats = sj.comm_stats(state)
  per_step = sum(bits(int(np.prod(s))) for s in SHAPES.values())
  assert sj.exact(state.inner_state.counters.bits) == 5 * per_step
  last = sum(np.sum((grads[-1][k] - want[-1][k]) ** 2) for k in SHAPES)
  np.testing.assert_allclose(float(stats["residual_norm"]) ** 2, last,
                             rtol=1e-4)
  assert int(stats["nonfinite_steps"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["top_k", "onebit"])
def test_ef21_over_8_devices_matches_the_per_worker_numpy_loop(name):
  if jax.device_count() < DEVICES:
    pytest.skip("needs the 8 forced host devices of tests/conftest.py")
  make, rule, _ = EF21_COMPRESSORS[name]
  steps = 4
  grads = _worker_grads(DEVICES, steps, seed=1)
  want, want_g_i = _np_ef21(rule, grads)
  tx = sj.ef21(make(), axis_name="data")
  params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
  state = jax.tree.map(lambda x: jnp.stack([x] * DEVICES), tx.init(params))
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:DEVICES]), ("data",))

  def step(g, state):
    first = lambda t: jax.tree.map(lambda x: x[0], t)  # pylint: disable=unnecessary-lambda-assignment
    out, state = tx.update(first(g), first(state))
    return jax.tree.map(lambda x: x[None], (out, state))

  fn = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=jax.P("data"),
                             out_specs=jax.P("data"), check_vma=False))
  for t in range(steps):
    g = jax.tree.map(lambda *xs: jnp.stack(xs), *grads[t])
    out, state = fn(g, state)
    for d in range(DEVICES):  # every device steps with the same estimate
      chex.assert_trees_all_close(jax.tree.map(lambda x: x[d], out), want[t],
                                  rtol=1e-5, atol=1e-6)
  for d in range(DEVICES):
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x[d], state.estimate), want_g_i[d],
        rtol=1e-5, atol=1e-6)
  # The shared estimate is the mean of the workers' estimates.
  chex.assert_trees_all_close(
      jax.tree.map(lambda x: x[0], state.mean_estimate),
      jax.tree.map(lambda x: x.mean(0), state.estimate), rtol=1e-5,
      atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("axis_name", ["data", None])
def test_ef21_over_a_data_axis_gives_every_device_the_same_update(axis_name):
  """The data-parallel step's check (an abstract trace over 8 devices)."""
  tx = optax.chain(sj.ef21(sj.onebit(), axis_name=axis_name),
                   optax.sgd(0.1))
  params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
  opt_state = jax.eval_shape(lambda p: jax.tree.map(
      lambda x: jnp.stack([x] * DEVICES), tx.init(p)), params)
  if axis_name is None:  # nothing averages: refused
    with pytest.raises(ValueError, match="differ between the devices"):
      data_parallel.check_replicated_updates(tx, params, opt_state, DEVICES)
  else:
    data_parallel.check_replicated_updates(tx, params, opt_state, DEVICES)


@pytest.mark.slow
def test_ef21_in_a_jitted_chain_with_adam_and_vmap_over_clients():
  clients, steps = 3, 3
  grads = _worker_grads(clients, steps, seed=2)
  tx = optax.chain(sj.ef21(sj.top_k(k=2)), optax.adam(1e-2))
  outs, state = _vmapped_over_clients(tx, grads, clients, with_params=True)
  # Reference: each client alone, EF21 and adam run by hand.
  for c in range(clients):
    ef, adam = sj.ef21(sj.top_k(k=2)), optax.adam(1e-2)
    p = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    es, as_ = ef.init(p), adam.init(p)
    for t, step in enumerate(grads):
      g, es = ef.update(step[c], es)
      u, as_ = adam.update(g, as_, p)
      chex.assert_trees_all_close(u, jax.tree.map(lambda x: x[c], outs[t]),  # pylint: disable=cell-var-from-loop
                                  rtol=1e-5, atol=1e-7)
  assert int(sj.comm_stats(state)["steps"][0]) == steps


def test_ef21_skips_a_nonfinite_step_and_keeps_its_estimate():
  tx = sj.ef21(sj.top_k(k=1))
  x = jnp.asarray([1.0, -3.0, 2.0])
  out1, state1 = tx.update(x, tx.init(x))
  bad = x.at[0].set(jnp.nan)
  message, _ = tx.encode(bad, state1)
  out2, state2 = tx.update(bad, state1)
  np.testing.assert_array_equal(sj.decode(message), 0.0)  # nothing sent
  np.testing.assert_array_equal(out2, out1)  # the receiver's estimate
  np.testing.assert_array_equal(estimate(state2), estimate(state1))
  assert sj.exact(state2.inner_state.counters.bits) == sj.exact(
      state1.inner_state.counters.bits)
  stats = sj.comm_stats(state2)
  assert int(stats["nonfinite_steps"]) == 1
  assert int(stats["internal_nonfinite_steps"]) == 0


@pytest.mark.slow
def test_ef21_keeps_a_float32_estimate_of_bf16_gradients():
  tx = sj.ef21(sj.top_k(k=1))
  g = jnp.asarray([1.0, 2.0 ** -9, 3.0], jnp.bfloat16)
  state = tx.init(g)
  assert state.estimate.dtype == jnp.float32
  for _ in range(3):
    out, state = tx.update(g, state)
  assert out.dtype == jnp.bfloat16
  # g_3: top-1 of g, then of g - g_1, then of g - g_2: the three entries.
  np.testing.assert_array_equal(np.asarray(estimate(state)),
                                np.asarray(g, np.float32))


def test_ef21_refuses_bad_arguments_and_updates():
  with pytest.raises(TypeError, match="compressor"):
    sj.ef21(optax.adam(1e-3))
  with pytest.raises(ValueError, match="estimate_dtype"):
    sj.ef21(sj.top_k(k=1), estimate_dtype=jnp.int32)
  tx = sj.ef21(sj.top_k(k=1))
  with pytest.raises(ValueError, match="ef21: update.*shape"):
    tx.update(jnp.zeros((2, 3)), tx.init(jnp.zeros(3)))
  with pytest.raises(ValueError, match="expected one EF21State, found 0"):
    estimate(sj.top_k(k=1).init(jnp.zeros(3)))


def test_ef21_state_reports_like_error_feedback():
  ef = sj.error_feedback(sj.top_k(k=1))
  ef21 = sj.ef21(sj.top_k(k=1))
  x = jnp.asarray([1.0, -3.0, 2.0])
  assert isinstance(ef21.init(x), EF21State)
  ef_stats = sj.comm_stats(ef.update(x, ef.init(x))[1])
  ef21_stats = sj.comm_stats(ef21.update(x, ef21.init(x))[1])
  assert set(ef21_stats) == set(ef_stats)
  # At step 1 both send top-1 of x and leave the same error.
  for key in ("bits_sent", "residual_norm", "total_error"):
    assert float(ef21_stats[key]) == float(ef_stats[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("ef", [True, "ef21"], ids=["ef", "ef21"])
@pytest.mark.parametrize("name", ["terngrad", "natural_compression",
                                  "onebit"])
def test_vmap_over_clients_equals_separate_runs(name, ef):
  clients, steps = 3, 2
  grads = _worker_grads(clients, steps, seed=5)
  tx = cases.make(name, ef)
  outs, state = _vmapped_over_clients(tx, grads, clients)
  single = jax.jit(tx.update)
  for c in range(clients):
    s = tx.init({k: jnp.zeros(shape) for k, shape in SHAPES.items()})
    for t, step in enumerate(grads):
      out, s = single(step[c], s)
      chex.assert_trees_all_close(out, jax.tree.map(lambda x: x[c], outs[t]),  # pylint: disable=cell-var-from-loop
                                  rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(
        cases.memory(s), jax.tree.map(lambda x: x[c], cases.memory(state)),  # pylint: disable=cell-var-from-loop
        rtol=1e-6, atol=1e-7)


# -------------------------------------------------------------- registry


@pytest.mark.parametrize("name,kwargs,bits", [
    ("terngrad", {"clip_sigma": 2.5}, 32 + 2 * 20),
    ("natural_compression", {"seed": 4}, 9 * 20),
    ("onebit", {}, 64 + 20)])
def test_registry_builds_the_new_compressors(name, kwargs, bits):
  tx = sj.create_compressor({"name": name, **kwargs})
  assert _bits(tx, jnp.asarray(X)) == bits
