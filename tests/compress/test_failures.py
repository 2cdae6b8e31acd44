"""No silent failures: bad arguments, low-precision thresholds, overflowing
norms, the CWMP ledger, and inputs without anything to compress.

Error feedback's own faults (non-finite values inside EF, updates unlike the
params) are in tests/test_feedback.py.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
import compressor_cases as cases

# ----------------------------------------------------------- bad arguments

NAN, INF = float("nan"), float("inf")

# (factory, kwargs, exception, what the message must name)
BAD = [
    # Integer arguments: no float, not even an integral one, no bool.
    (sj.top_k, dict(k=2.7), TypeError, "k must be an int"),
    (sj.top_k, dict(k=3.0), TypeError, "k must be an int"),
    (sj.top_k, dict(k=True), TypeError, "k must be an int"),
    (sj.random_k, dict(k=2.7), TypeError, "k must be an int"),
    (sj.blockwise_top_k, dict(ratio=0.5, block_size=2.5), TypeError,
     "block_size must be an int"),
    (sj.qsgd, dict(levels=2.5), TypeError, "levels must be an int"),
    (sj.qsgd, dict(levels=NAN), TypeError, "levels must be an int"),
    (sj.qsgd, dict(levels=2**24 + 1), ValueError,
     r"levels must be an int in \[1, 16777216\]"),
    (sj.qsgd, dict(levels=4, seed=0.5), TypeError, "seed must be an int"),
    (sj.random_k, dict(k=2, seed=1.5), TypeError, "seed must be an int"),
    (sj.volume_matched_threshold, dict(k=2.5), TypeError, "k must be an int"),
    (sj.volume_matched_threshold, dict(k=0), ValueError, "k must be"),
    # Real arguments: finite and in range; a number, not a string.
    (sj.top_k, dict(ratio=NAN), ValueError, r"ratio .*\(0, 1\]"),
    (sj.top_k, dict(ratio="0.1"), TypeError, "ratio must be a real number"),
    (sj.blockwise_top_k, dict(ratio=NAN), ValueError, "ratio"),
    (sj.random_k, dict(ratio=INF), ValueError, "ratio"),
    (sj.hard_threshold, dict(threshold=NAN), ValueError,
     "threshold must be a finite number >= 0"),
    (sj.hard_threshold, dict(threshold=INF), ValueError, "threshold"),
    (sj.hard_threshold, dict(threshold="0.1"), TypeError, "threshold"),
    (sj.hard_threshold, dict(threshold=0.1, capacity=NAN), ValueError,
     "capacity"),
    (sj.cost_weighted, dict(budget=NAN), ValueError, "budget"),
    (sj.cost_weighted, dict(budget=INF), ValueError, "budget"),
    (sj.cost_weighted, dict(energy_ratio=NAN), ValueError, "energy_ratio"),
    (sj.cost_weighted, dict(budget=1.0, power=INF), ValueError, "power"),
    (sj.cost_weighted, dict(budget=1.0, max_ratio=NAN), ValueError,
     "max_ratio"),
    (sj.cost_weighted, dict(costs="solar", budget=1.0), ValueError, "costs"),
    (sj.energy_metered, dict(compressor=sj.top_k(k=1), costs="solar"),
     ValueError, "costs"),
    # Dtypes: float dtypes only, and names that are dtypes.
    (sj.top_k, dict(k=2, value_dtype=jnp.int8), ValueError,
     "value_dtype must be a float dtype"),
    (sj.top_k, dict(k=2, value_dtype="fp16"), TypeError, "value_dtype"),
    (sj.blockwise_top_k, dict(ratio=0.5, value_dtype=jnp.int32), ValueError,
     "value_dtype"),
    (sj.hard_threshold, dict(threshold=0.1, value_dtype=jnp.int16),
     ValueError, "value_dtype"),
    (sj.random_k, dict(k=2, value_dtype=jnp.uint8), ValueError,
     "value_dtype"),
    (sj.cost_weighted, dict(budget=1.0, value_dtype=jnp.int8), ValueError,
     "value_dtype"),
    (sj.cast, dict(dtype=None), TypeError, "dtype must be a float dtype"),
    (sj.random_k, dict(k=2, scaled="yes"), TypeError, "scaled must be a bool"),
    # make_compressor and the registry.
    (sj.make_compressor, dict(encode_vector=3), TypeError, "encode_vector"),
    (sj.make_compressor, dict(encode_vector=sj.no_compression, seed=1.5),
     TypeError, "seed"),
    (sj.create_compressor, dict(name="top_k", k=2.7), TypeError, "k must be"),
    (sj.create_compressor, dict(name="top_k", k=2, value_dtype="int8"),
     ValueError, "value_dtype"),
    # Error feedback.
    (sj.error_feedback, dict(compressor=sj.top_k(k=1), carry=1.5),
     ValueError, r"carry must be a finite number in \[0, 1\]"),
    (sj.error_feedback, dict(compressor=sj.top_k(k=1), carry=-0.1),
     ValueError, "carry"),
    (sj.error_feedback, dict(compressor=sj.top_k(k=1), carry=NAN),
     ValueError, "carry"),
    (sj.error_feedback, dict(compressor=sj.top_k(k=1), learning_rate=NAN),
     ValueError, "learning_rate must be a finite number > 0"),
    (sj.error_feedback, dict(compressor=sj.top_k(k=1), learning_rate=0.0),
     ValueError, "learning_rate"),
    (sj.error_feedback, dict(compressor=sj.top_k(k=1), learning_rate="1e-3"),
     TypeError, "learning_rate"),
    (sj.error_feedback, dict(compressor=sj.top_k(k=1),
                             residual_dtype=jnp.int32), ValueError,
     "residual_dtype must be a float dtype"),
    (sj.error_feedback, dict(compressor=sj.top_k(k=1), residual_dtype="fp32"),
     TypeError, "residual_dtype"),
]


def _name(v):
  return getattr(v, "__name__", None) or repr(v)


@pytest.mark.parametrize(
    "factory,kwargs,error,match", BAD,
    ids=[f"{f.__name__}-" + "-".join(f"{k}={_name(v)}" for k, v in kw.items()
                                     if k != "compressor")
         for f, kw, _, _ in BAD])
def test_bad_argument_is_refused_at_construction(factory, kwargs, error,
                                                 match):
  with pytest.raises(error, match=match):
    factory(**kwargs)


@pytest.mark.parametrize("wrapper", [
    sj.error_feedback, sj.energy_metered,
    lambda c: sj.error_feedback(c, axis_name="data")])
@pytest.mark.parametrize("not_a_compressor", [
    optax.adam(1e-3), optax.chain(sj.top_k(k=1), optax.sgd(0.1)),
    optax.inject_hyperparams(sj.top_k, static_args=sj.top_k.static_args)(k=1),
    sj.top_k],  # the factory, not called
                         ids=["adam", "chain", "inject_hyperparams",
                              "factory"])
def test_optimizer_passed_as_compressor_is_refused(wrapper, not_a_compressor):
  with pytest.raises(TypeError, match="must be a sparsejax Compressor") as e:
    wrapper(not_a_compressor)
  if isinstance(not_a_compressor, optax.GradientTransformation):
    # and says what to pass instead, and where the optimizer goes.
    assert "sj.top_k(0.01)" in str(e.value)
    assert "optax.chain(sj.error_feedback" in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("factory,kwargs", [
    (sj.top_k, dict(k=np.int64(2))), (sj.random_k, dict(k=np.int32(2))),
    (sj.blockwise_top_k, dict(ratio=np.float32(0.5),
                              block_size=np.int64(2))),
    (sj.qsgd, dict(levels=np.int16(4), seed=np.uint8(3))),
    (sj.hard_threshold, dict(threshold=np.float16(0.5), capacity=1.0)),
    (sj.hard_threshold, dict(threshold=jnp.float32(0.5))),
    (sj.cast, dict(dtype="bfloat16")),
    (sj.cost_weighted, dict(budget=0, max_ratio=1)),
    (lambda **kw: sj.error_feedback(sj.top_k(k=2), **kw),
     dict(carry=np.float32(0.5), learning_rate=jnp.float32(0.1),
          residual_dtype="float32")),
])
def test_numpy_and_concrete_jax_scalars_are_accepted(factory, kwargs):
  tx = factory(**kwargs)
  x = jnp.asarray([1.0, -4.0, 3.0, 0.5])
  out, _ = tx.update(x, tx.init(x))
  assert out.shape == x.shape


def test_traced_shape_argument_names_static_args():
  """A shape-fixing argument left out of static_args is refused by name."""
  x = jnp.arange(1.0, 5.0)
  tx = optax.inject_hyperparams(sj.top_k)(k=2)  # k traced under jit
  with pytest.raises(TypeError, match="list 'k' in static_args"):
    jax.jit(tx.update)(x, tx.init(x))
  tx = optax.inject_hyperparams(sj.hard_threshold)(threshold=0.5,
                                                   capacity=0.5)
  with pytest.raises(TypeError, match="list 'capacity' in static_args"):
    jax.jit(tx.update)(x, tx.init(x))


def test_traced_numbers_still_work_under_inject_hyperparams():
  """Floats that may change during training are traced, not refused."""
  x = jnp.asarray([1.0, -4.0, 3.0, 0.5])
  ht = optax.inject_hyperparams(sj.hard_threshold,
                                static_args=sj.hard_threshold.static_args)(
                                    threshold=2.0)
  out, _ = jax.jit(ht.update)(x, ht.init(x))
  np.testing.assert_array_equal(out, [0.0, -4.0, 3.0, 0.0])
  ef = optax.inject_hyperparams(sj.error_feedback,
                                static_args=sj.error_feedback.static_args)(
                                    compressor=sj.top_k(k=1), carry=0.5,
                                    learning_rate=0.1)
  out, _ = jax.jit(ef.update)(x, ef.init(x))
  np.testing.assert_allclose(out, [0.0, -0.4, 0.0, 0.0])


# ------------------------------------ hard threshold: one rule, every path


def _grid_below(dtype, value):
  """A threshold that ``dtype`` rounds down to ``value``'s grid point."""
  g = np.asarray(value, dtype)
  up = np.nextafter(g, np.asarray(np.inf, dtype))
  return float(g) + 0.3 * (float(up) - float(g)), g


def _threshold_paths(lam):
  """hard_threshold with every buffer, eager and under inject_hyperparams."""
  yield "masked", sj.hard_threshold(lam)
  yield "capacity=1", sj.hard_threshold(lam, capacity=1.0)
  yield "capacity=0.5", sj.hard_threshold(lam, capacity=0.5)
  for capacity in (None, 1.0):
    yield f"injected-capacity={capacity}", optax.inject_hyperparams(
        sj.hard_threshold, static_args=sj.hard_threshold.static_args)(
            threshold=lam, capacity=capacity)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16],
                         ids=["float16", "bfloat16"])
def test_hard_threshold_compares_in_the_input_dtype_on_every_path(dtype):
  """Sahu et al.'s ``|x| >= lambda`` with lambda rounded to x's dtype."""
  np_dtype = np.dtype(dtype)
  for value in (0.1, 3.3):  # rounds down to a grid point g < lambda
    lam, g = _grid_below(np_dtype, value)
    down = np.nextafter(g, np.asarray(0, np_dtype))
    up = np.nextafter(g, np.asarray(np.inf, np_dtype))
    x = np.asarray([g, -g, down, -down, up, 0, 2 * g, -up], np_dtype)
    keep = np.abs(x) >= np.asarray(lam, np_dtype)  # numpy, in dtype
    assert keep[0] and not keep[2]  # the test exercises the rounding
    expected = np.where(keep, x, 0).astype(np.float64)
    for path, tx in _threshold_paths(lam):
      out, state = jax.jit(tx.update)(jnp.asarray(x),
                                      tx.init(jnp.asarray(x)))
      assert out.dtype == dtype
      got = np.asarray(out, np.float64)
      if path == "capacity=0.5":  # the first 4 kept entries, index order
        first = np.flatnonzero(keep)[:4]
        np.testing.assert_array_equal(np.flatnonzero(got), first, path)
        np.testing.assert_array_equal(got[first], expected[first], path)
      else:
        np.testing.assert_array_equal(got, expected, path)
      # The kept count is the same everywhere (sent + overflow).
      stats = sj.comm_stats(state)
      assert int(stats["last_elements"]) + int(stats["overflow"]) == int(
          keep.sum()), path


# ------------------------------------------- norms without overflow


def test_qsgd_norm_of_huge_finite_input_is_finite_and_exact():
  x = jnp.asarray([1e30, -1e30, 1e30, -1e30], jnp.float32)
  tx = sj.qsgd(2)
  message, _ = tx.encode(x, tx.init(x))
  # ||x|| = 2e30 (its square overflows float32); every |x_i|/||x|| = 1/2 is
  # exactly on the 2-level grid, so the decode is x itself.
  assert np.isfinite(float(message.norm))
  np.testing.assert_allclose(float(message.norm), 2 * float(x[0]), rtol=1e-7)
  np.testing.assert_array_equal(sj.decode(message), x)


@pytest.mark.parametrize("magnitude", [1e30, 3e38])
def test_scaled_sign_scale_of_huge_finite_input_is_finite(magnitude):
  x = jnp.asarray(np.resize([magnitude, -magnitude], 64), jnp.float32)
  tx = sj.scaled_sign()
  out, _ = tx.update(x, tx.init(x))
  # mean |x| = magnitude, though the sum of |x| overflows float32 at 3e38.
  np.testing.assert_allclose(out, x, rtol=1e-6)


@pytest.mark.slow
def test_qsgd_small_inputs_keep_their_norm():
  # The power-of-two prescale also protects tiny inputs from underflow.
  x = jnp.asarray([3e-25, 4e-25], jnp.float32)
  message, _ = sj.qsgd(8).encode(x, sj.qsgd(8).init(x))
  np.testing.assert_allclose(float(message.norm), 5e-25, rtol=1e-6)


# ------------------------------------------------------- step counters


@pytest.mark.slow
def test_int32_step_counters_saturate_instead_of_wrapping():
  """Sizes are exact BitCounts; the int32 step counts stop at 2**31 - 1."""
  top = jnp.asarray(2**31 - 1, jnp.int32)
  tx = sj.error_feedback(sj.top_k(k=1))
  x = jnp.asarray([1.0, -2.0, 3.0])
  state = tx.init(x)
  inner = state.inner_state._replace(
      counters=state.inner_state.counters._replace(steps=top))
  state = state._replace(inner_state=inner, step=top, nonfinite_steps=top,
                         internal_nonfinite_steps=top)
  _, sent = tx.update(x, state)
  assert int(sj.comm_stats(sent)["steps"]) == 2**31 - 1
  assert int(sent.step) == 2**31 - 1
  _, skipped = tx.update(x.at[0].set(jnp.nan), state)
  assert int(skipped.nonfinite_steps) == 2**31 - 1
  _, overflowed = tx.update(jnp.full(3, 3e38).at[1].set(-3e38),
                            state._replace(residual=jnp.full(3, 3e38)))
  assert int(overflowed.internal_nonfinite_steps) == 2**31 - 1


# --------------------------------------------------- CWMP energy ledger


@pytest.mark.slow
def test_cwmp_charges_only_what_fits_in_its_buffer():
  g = {"a": jnp.asarray([8.0, 7.0, 6.0, 5.0]),
       "b": jnp.asarray([4.0, 3.0, 2.0, 1.0])}
  costs = {"a": 1.0, "b": 2.0}
  # Budget 100 selects all 8 entries (cost 12); the buffer holds 2.
  tx = sj.cost_weighted(costs, budget=100.0, max_ratio=0.25)
  out, state = tx.update(g, tx.init(g))
  assert sj.exact(state.counters.overflow) == 6
  assert int(jnp.count_nonzero(out["a"])) + int(
      jnp.count_nonzero(out["b"])) == 2
  sent_cost = sum(float(jnp.sum(costs[k] * (out[k] != 0))) for k in g)
  assert sent_cost == 2.0  # a[0] and a[1]: the two best scores
  assert float(state.energy.total) == sent_cost
  assert float(state.energy.last) == sent_cost
  # Under error feedback the rest stays in the residual, charged later.
  ef = sj.error_feedback(tx)
  _, ef_state = ef.update(g, ef.init(g))
  assert float(sj.comm_stats(ef_state)["energy_joules"]) == sent_cost


# ------------------------------- zero-size leaves, empty trees, non-floats

EMPTY_CASES = cases.params()


def _base_tree():
  r = np.random.default_rng(0)
  return {"b": jnp.asarray(r.permutation(np.arange(1.0, 6.0))),
          "w": jnp.asarray(r.permutation(np.arange(1.0, 25.0)).reshape(4, 6)
                           / 8.0)}


def _bits(state):
  return float(sj.comm_stats(state)["bits_sent"])


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", EMPTY_CASES)
def test_zero_size_leaves_are_sent_whole_at_no_cost(name, ef):
  base = _base_tree()
  # "x" and "z" sort after "b" and "w": the other leaves keep their
  # positions (and the PRNG keys folded in from them).
  tree = {**base, "x": jnp.zeros((0,)), "z": jnp.zeros((0, 3), jnp.bfloat16)}
  tx = cases.make(name, ef)
  out, state = tx.update(tree, tx.init(tree))
  assert out["x"].shape == (0,) and out["z"].shape == (0, 3)
  assert out["z"].dtype == jnp.bfloat16
  ref = cases.make(name, ef)
  ref_out, ref_state = ref.update(base, ref.init(base))
  for key in base:
    np.testing.assert_array_equal(out[key], ref_out[key])
  assert _bits(state) == _bits(ref_state)
  if ef:
    assert cases.memory(state)["x"].shape == (0,)


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", EMPTY_CASES)
def test_tree_without_float_entries_passes_through(name, ef):
  tx = cases.make(name, ef)
  # An empty pytree: nothing sent, nothing counted.
  out, state = tx.update({}, tx.init({}))
  assert out == {} and _bits(state) == 0
  # Only non-float leaves: they travel whole, counted at their dtype's size.
  ints = {"i": jnp.asarray([3, -7, 2**30], jnp.int32),
          "m": jnp.asarray([True, False])}
  out, state = tx.update(ints, tx.init(ints))
  np.testing.assert_array_equal(out["i"], ints["i"])
  np.testing.assert_array_equal(out["m"], ints["m"])
  assert _bits(state) == 3 * 32 + 2 * 8
  # Only zero-size float leaves: nothing to compress either.
  empty = {"e": jnp.zeros((0, 2))}
  out, state = tx.update(empty, tx.init(empty))
  assert out["e"].shape == (0, 2) and _bits(state) == 0
  if ef:
    assert float(sj.comm_stats(state)["nonfinite_steps"]) == 0


@pytest.mark.slow
def test_zero_size_leaf_does_not_break_the_ef_invariant():
  tree = {"e": jnp.zeros((0,)), "w": jnp.asarray([3.0, -1.0, 2.0])}
  ef = sj.error_feedback(sj.top_k(k=1))
  state = ef.init(tree)
  total = jax.tree.map(jnp.zeros_like, tree)
  for _ in range(3):
    out, state = ef.update(tree, state)
    total = jax.tree.map(jnp.add, total, out)
  np.testing.assert_array_equal(total["w"] + sj.residual(state)["w"],
                                3 * tree["w"])
  assert math.isclose(float(sj.comm_stats(state)["elements_sent"]), 3)

