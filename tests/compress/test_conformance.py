"""Conformance suite: every compressor, alone and under error feedback.

Each test runs over every entry of ``compressor_cases.COMPRESSORS`` three
times: the bare compressor, ``error_feedback(compressor)`` and
``ef21(compressor)``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
import compressor_cases as cases

CASES = cases.params()


def _tree(dtype=jnp.float32, seed=0):
  r = np.random.default_rng(seed)
  # Distinct magnitudes (no ties, no zeros) so every selection is unambiguous.
  w = r.permutation(np.arange(1, 25)).reshape(4, 6) / 8.0
  w = w * r.choice([-1.0, 1.0], size=w.shape)
  b = (r.permutation(np.arange(1, 6)) / 4.0 + 0.01) * r.choice([-1, 1], 5)
  return {"w": jnp.asarray(w, dtype), "b": jnp.asarray(b, dtype)}


def _assert_trees_equal(a, b):
  chex.assert_trees_all_equal_structs(a, b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    assert x.dtype == y.dtype, (x.dtype, y.dtype)
    np.testing.assert_array_equal(np.asarray(x, np.float64) if x.dtype ==
                                  jnp.bfloat16 else np.asarray(x),
                                  np.asarray(y, np.float64) if y.dtype ==
                                  jnp.bfloat16 else np.asarray(y))


def _two_steps(tx, params, g1, g2):
  state = tx.init(params)
  out1, state = tx.update(g1, state, params)
  out2, state = tx.update(g2, state, params)
  return out1, out2, state


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", CASES)
def test_accepts_extra_args_through_chain(name, ef):
  params = _tree()
  g = _tree(seed=1)
  chain = optax.chain(cases.make(name, ef), optax.sgd(0.1))
  state = chain.init(params)
  with_extra, s1 = chain.update(g, state, params, extra=1, other="x")
  without, s2 = chain.update(g, state, params)
  _assert_trees_equal(with_extra, without)
  _assert_trees_equal(s1, s2)
  # Directly as well.
  tx = cases.make(name, ef)
  out, _ = tx.update(g, tx.init(params), params, extra=1)
  _assert_trees_equal(out, tx.update(g, tx.init(params), params)[0])


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", CASES)
def test_no_recompilation_on_later_steps(name, ef):
  tx = optax.chain(cases.make(name, ef), optax.sgd(0.1))
  traces = []

  @jax.jit
  def step(params, state, g):
    traces.append(1)  # Python side effect: runs once per trace.
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state

  # States of later steps (computed eagerly: no XLA compilation needed).
  params = _tree()
  states = [tx.init(params)]
  for seed in range(2):
    _, s = tx.update(_tree(seed=seed + 1), states[-1], params)
    states.append(s)
  # jit retraces (and recompiles) iff the pytree structure, shapes, dtypes or
  # weak types of the arguments change: tracing step on every state must hit
  # the trace cache after the first.
  for seed, state in enumerate(states):
    step.trace(params, state, _tree(seed=seed + 1))
  assert len(traces) == 1
  # and the jitted step agrees with the eager one (trace is well formed).
  jaxpr = step.trace(params, states[0], _tree(seed=1)).jaxpr
  assert len(traces) == 1
  out_avals = jaxpr.out_avals[len(jax.tree.leaves(params)):]
  state_leaves = jax.tree.leaves(states[0])
  assert [(a.shape, a.dtype) for a in out_avals] == [
      (x.shape, x.dtype) for x in state_leaves]


DTYPE_CASES = [
    pytest.param(name, ef, dtype, rdtype,
                 id=f"{cases.case_id(name, ef)}-{jnp.dtype(dtype).name}"
                 + (f"-res_{jnp.dtype(rdtype).name}" if rdtype else ""))
    for name in cases.NAMES
    for ef, dtype, rdtype in [(False, jnp.float32, None),
                              (False, jnp.bfloat16, None),
                              (True, jnp.float32, None),
                              (True, jnp.bfloat16, None),
                              (True, jnp.bfloat16, jnp.float32),
                              (True, jnp.bfloat16, jnp.bfloat16),
                              ("ef21", jnp.float32, None),
                              ("ef21", jnp.bfloat16, None),
                              ("ef21", jnp.bfloat16, jnp.bfloat16)]
    if ef in cases.feedbacks(name)]


@pytest.mark.slow
@pytest.mark.parametrize("name,ef,dtype,residual_dtype", DTYPE_CASES)
def test_dtypes_are_kept(name, ef, dtype, residual_dtype):
  kwargs = {} if residual_dtype is None else dict(residual_dtype=residual_dtype)
  tx = cases.make(name, ef, **kwargs)
  params = _tree(dtype)
  g = _tree(dtype, seed=1)
  state0 = tx.init(params)
  out, state = tx.update(g, state0, params)
  chex.assert_trees_all_equal_shapes(out, g)
  for o in jax.tree.leaves(out):
    assert o.dtype == dtype
  # The transformation really compresses (only no_compression is lossless; bf16
  # cast of bf16 input is lossless too).
  lossless = name == "no_compression" or (name == "cast_bf16" and
                                    dtype == jnp.bfloat16)
  changed = any(not np.array_equal(np.asarray(o, np.float32),
                                   np.asarray(x, np.float32))
                for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(g)))
  assert changed != lossless
  # State dtypes (counters, keys, residual) do not drift across steps.
  chex.assert_trees_all_equal_shapes_and_dtypes(state, state0)
  if ef:
    # Default: the params' dtype promoted to at least float32.
    expected = jnp.float32 if residual_dtype is None else residual_dtype
    for e in jax.tree.leaves(cases.memory(state)):
      assert e.dtype == expected
    # The compressor sees a in the gradient's dtype: the message is the
    # bare compressor's (same wire dtype, same bits), whatever the residual.
    message, _ = tx.encode(g, state0)
    bare = cases.make(name)
    bare_message, _ = bare.encode(g, bare.init(params))
    assert jax.tree.structure(message) == jax.tree.structure(bare_message)
    assert [x.dtype for x in jax.tree.leaves(message)] == [
        x.dtype for x in jax.tree.leaves(bare_message)]
    np.testing.assert_array_equal(
        sj.exact(sj.compress.message_size(message)[1]),
        sj.exact(sj.compress.message_size(bare_message)[1]))
    if expected == jnp.float32:
      # An fp32 memory loses nothing to rounding at step 1 (e_0 = g_0 = 0):
      # the output is the message, e_1 == g - decode(message) (EF) and
      # g_1 == decode(message) (EF21) exactly in fp32.
      sent = sj.decode(message)
      for gi, si, oi, ei in zip(*map(jax.tree.leaves,
                                     (g, sent, out, cases.memory(state)))):
        assert si.dtype == dtype
        np.testing.assert_array_equal(
            np.asarray(ei), np.asarray(si, np.float32) if ef == "ef21" else
            np.asarray(gi, np.float32) - np.asarray(si, np.float32))
        np.testing.assert_array_equal(np.asarray(oi), np.asarray(si))


@pytest.mark.parametrize("name,ef", CASES)
def test_init_on_shape_dtype_structs(name, ef):
  tx = cases.make(name, ef)
  params = _tree()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                          params)
  _assert_trees_equal(tx.init(abstract), tx.init(params))
  # and jax.eval_shape(tx.init, ...) agrees with the real state.
  shapes = jax.eval_shape(tx.init, abstract)
  chex.assert_trees_all_equal_shapes_and_dtypes(shapes, tx.init(params))


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", CASES)
def test_same_result_under_inject_hyperparams(name, ef):
  params = _tree()
  g1, g2 = _tree(seed=1), _tree(seed=2)
  plain = _two_steps(cases.make(name, ef), params, g1, g2)
  injected = _two_steps(cases.make_injected(name, ef), params, g1, g2)
  for a, b in zip(plain[:2], injected[:2]):
    _assert_trees_equal(a, b)
  # Counters are the same too.
  np.testing.assert_array_equal(
      sj.comm_stats(plain[2])["bits_sent"],
      sj.comm_stats(injected[2])["bits_sent"])


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", CASES)
def test_masked_in_chain_leaves_biases_dense(name, ef):
  params = _tree()
  g = _tree(seed=1)
  tx = optax.chain(
      optax.masked(cases.make(name, ef), {"w": True, "b": False}),
      optax.scale(-1.0))
  state = tx.init(params)
  out, state = tx.update(g, state, params)
  np.testing.assert_array_equal(out["b"], -g["b"])  # dense, untouched
  alone = cases.make(name, ef)
  expected, _ = alone.update({"w": g["w"]}, alone.init({"w": params["w"]}))
  np.testing.assert_array_equal(out["w"], -expected["w"])
  # Only the kernel was counted.
  alone_stats = sj.comm_stats(alone.update(
      {"w": g["w"]}, alone.init({"w": params["w"]}))[1])
  assert float(sj.comm_stats(state)["bits_sent"]) == float(
      alone_stats["bits_sent"])


@pytest.mark.slow
@pytest.mark.parametrize("name,ef", CASES)
def test_integer_leaves_pass_through(name, ef):
  params = _tree()
  g = _tree(seed=1)
  ints = jnp.array([3, -7, 2**30], jnp.int32)
  # "z" sorts last, so the float leaves keep their positions (and keys).
  tx = cases.make(name, ef)
  out, state = tx.update({**g, "z": ints}, tx.init({**params, "z": ints}),
                         None)
  assert out["z"].dtype == jnp.int32
  np.testing.assert_array_equal(out["z"], ints)
  ref, _ = tx.update(g, tx.init(params), None)
  for key in ("w", "b"):
    np.testing.assert_array_equal(out[key], ref[key])
  if ef:
    np.testing.assert_array_equal(
        cases.memory(state)["z"],
        cases.memory(tx.init({**params, "z": ints}))["z"])


@pytest.mark.parametrize("name,ef", CASES)
def test_map_params_reaches_exactly_the_params_shaped_state(name, ef):
  """``optax.tree.map_params`` (used to build sharding specs of a state)
  inits with a placeholder for the params: it must map the residual (and
  an optimizer's moments) and nothing else."""
  params = _tree()
  tx = optax.chain(cases.make(name, ef), optax.sgd(0.1, momentum=0.9))
  state = tx.init(params)
  _, state = tx.update(_tree(seed=1), state, params)
  _assert_trees_equal(optax.tree.map_params(tx, lambda p: p, state), state)
  mapped = optax.tree.map_params(tx, lambda p: p + 1, state)
  # The momentum trace of sgd moves, and the residual (estimate) under EF
  # (EF21), or DGC's momentum u and accumulation v ...
  own = {"dgc": ("momentum", "accumulation")}.get(name.split("_")[0], ())
  fields = own or (("estimate" if ef == "ef21" else "residual",) if ef else ())
  moved = [(state[1][0].trace, mapped[1][0].trace)]
  moved += [(getattr(state[0], f), getattr(mapped[0], f)) for f in fields]
  for before, after in moved:
    for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
      np.testing.assert_array_equal(a, b + 1)
  # ... everything else (counters, keys, ledgers) does not.
  def rest(s):
    return s[0]._replace(**dict.fromkeys(fields)) if fields else s[0]
  _assert_trees_equal(rest(mapped), rest(state))
  # and the non-params part can be replaced, e.g. by sharding specs.
  specs = optax.tree.map_params(tx, lambda p: "param", state,
                                transform_non_params=lambda _: "other")
  n_params = len(jax.tree.leaves(params))
  assert jax.tree.leaves(specs).count("param") == n_params * (1 + len(fields))


# ---------------------------------------------------------------- bad input

BAD_ARGS = [
    *[pytest.param(f, kw, arg, id=f"{f.__name__}-{arg}={kw[arg]}")
      for f, base, arg in [(sj.top_k, {}, "ratio"),
                           (sj.blockwise_top_k, {}, "ratio"),
                           (sj.random_k, {}, "ratio"),
                           (sj.hard_threshold, {"threshold": 0.1},
                            "capacity")]
      for kw in [{**base, arg: v} for v in (0, -0.1, 1.5)]],
    *[pytest.param(f, {"k": v}, "k", id=f"{f.__name__}-k={v}")
      for f in (sj.top_k, sj.random_k) for v in (0, -3)],
    pytest.param(sj.hard_threshold, {"threshold": -0.5}, "threshold",
                 id="threshold<0"),
    pytest.param(sj.blockwise_top_k, {"ratio": 0.1, "block_size": 0},
                 "block_size", id="block_size=0"),
    pytest.param(sj.qsgd, {"levels": 0}, "levels", id="levels=0"),
    pytest.param(sj.qsgd, {"levels": -2}, "levels", id="levels=-2"),
    *[pytest.param(f, {**kw, "scope": "layer"}, "scope",
                   id=f"{f.__name__}-scope")
      for f, kw in [(sj.top_k, {"k": 1}), (sj.random_k, {"k": 1}),
                    (sj.blockwise_top_k, {"ratio": 0.1})]],
    *[pytest.param(f, {**kw, "index_encoding": "csr"}, "index_encoding",
                   id=f"{f.__name__}-index_encoding")
      for f, kw in [(sj.top_k, {"k": 1}), (sj.blockwise_top_k, {"ratio": 0.1}),
                    (sj.hard_threshold, {"threshold": 0.1})]],
    pytest.param(sj.cast, {"dtype": jnp.int8}, "dtype", id="cast-int8"),
]


@pytest.mark.parametrize("factory,kwargs,arg", BAD_ARGS)
def test_bad_arguments_raise_at_construction(factory, kwargs, arg):
  with pytest.raises(ValueError, match=arg):
    factory(**kwargs)


@pytest.mark.parametrize("factory", [sj.top_k, sj.random_k])
def test_ratio_and_k_are_exclusive(factory):
  with pytest.raises(ValueError, match="ratio"):
    factory()
  with pytest.raises(ValueError, match="ratio"):
    factory(0.1, k=3)


@pytest.mark.slow
@pytest.mark.parametrize("factory,kwargs,nonzeros", [
    (sj.top_k, {"ratio": 1.0}, 4), (sj.top_k, {"k": 1}, 1),
    (sj.top_k, {"k": 10}, 4),  # k > n keeps everything
    (sj.random_k, {"ratio": 1e-6}, 1),  # at least one entry
    (sj.hard_threshold, {"threshold": 0.0}, 4),
    (sj.hard_threshold, {"threshold": 0.1, "capacity": 1.0}, 4),
    (sj.blockwise_top_k, {"ratio": 1.0, "block_size": 1}, 4)])
def test_boundary_arguments_are_accepted(factory, kwargs, nonzeros):
  tx = factory(**kwargs)
  x = jnp.arange(1.0, 5.0)
  out, _ = tx.update(x, tx.init(x))
  assert int(np.count_nonzero(out)) == nonzeros
  np.testing.assert_array_equal(np.asarray(out)[np.asarray(out) != 0],
                                np.asarray(x)[np.asarray(out) != 0])


@pytest.mark.slow
def test_qsgd_one_level_sends_zero_or_norm():
  tx = sj.qsgd(1)
  x = jnp.asarray([3.0, -4.0, 0.0])
  out, _ = tx.update(x, tx.init(x))
  assert set(np.abs(np.asarray(out)).tolist()) <= {0.0, 5.0}
  assert np.asarray(out)[2] == 0.0
