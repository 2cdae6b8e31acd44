"""Tests for sparsejax.training.checkpoint: exact round trips."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax.training import Checkpointer


class CompressorState(NamedTuple):
  """Stands in for an error-feedback compressor state."""
  error: dict
  key: jax.Array
  counter: jax.Array
  seen: jax.Array


def _make_state(seed=0):
  k = jax.random.key(seed)
  kw, kb, kc = jax.random.split(k, 3)
  params = {
      "dense": {
          "w": jax.random.normal(kw, (5, 7), jnp.bfloat16),
          "b": jax.random.normal(kb, (7,), jnp.float32),
      }
  }
  opt = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.add_decayed_weights(1e-4),
      optax.adamw(1e-3),
  )
  opt_state = opt.init(params)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.1, params)
  _, opt_state = opt.update(grads, opt_state, params)  # non-trivial moments
  comp = CompressorState(
      error=jax.tree.map(lambda p: jnp.full_like(p, 0.5), params),
      key=jax.random.split(kc, 4),  # a batch of typed keys
      counter=jnp.array(3, jnp.int32),
      seen=jnp.array([0, 1, 2**32 - 1], jnp.uint32),
  )
  return {
      "params": params,
      "opt_state": (opt_state, comp),
      "rng": jax.random.key(seed + 1, impl="rbg"),
      "step": 17 + seed,
      "lr_scale": 0.5,
      "host_counter": np.int64(seed),
      "bf16_nan": jnp.array([jnp.nan, -0.0, 1.5], jnp.bfloat16),
  }


def _bits(x):
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key):
    return ("key", str(jax.random.key_impl(x)),
            np.asarray(jax.random.key_data(x)).tobytes())
  a = np.asarray(x)
  return (a.dtype.str, a.shape, a.tobytes())


def assert_identical(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert type(g) is type(w) or (isinstance(g, jax.Array)
                                  and isinstance(w, jax.Array)), (g, w)
    if isinstance(w, jax.Array):
      assert g.dtype == w.dtype and g.shape == w.shape
    assert _bits(g) == _bits(w)


@pytest.mark.slow
def test_exact_round_trip(tmp_path):
  state = _make_state()
  with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
    assert ckpt.latest_step() is None
    ckpt.save(17, state)
    ckpt.wait()
    assert ckpt.latest_step() == 17
    # Restore into a target with other values but the same structure.
    restored = ckpt.restore(target=_make_state(seed=5) | {"step": 0})
  assert_identical(restored, state)
  inner, comp = restored["opt_state"]
  assert isinstance(comp, CompressorState)
  assert isinstance(inner[2][0], optax.ScaleByAdamState)
  assert restored["opt_state"][0][2][0].count.dtype == jnp.int32
  assert str(jax.random.key_impl(restored["rng"])) == "rbg"
  assert type(restored["step"]) is int and restored["step"] == 17
  assert type(restored["host_counter"]) is np.int64
  # The restored key drives the same random stream.
  np.testing.assert_array_equal(jax.random.uniform(restored["rng"], (3,)),
                                jax.random.uniform(state["rng"], (3,)))


def test_restore_from_abstract_target_and_new_manager(tmp_path):
  state = _make_state()
  d = str(tmp_path / "ckpt")
  ckpt = Checkpointer(d)
  ckpt.save(3, state)
  ckpt.close()
  ckpt = Checkpointer(d)  # e.g. a restarted job
  abstract = jax.eval_shape(lambda: state)
  restored = ckpt.restore(3, target=abstract)
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for g, w, a in zip(jax.tree.leaves(restored), jax.tree.leaves(state),
                     jax.tree.leaves(abstract)):
    assert g.dtype == a.dtype and g.shape == a.shape
    if isinstance(w, jax.Array):
      assert _bits(g) == _bits(w)
    else:  # Python/NumPy scalars come back as arrays of the abstract dtype.
      assert np.asarray(g) == w
  ckpt.close()


def test_max_to_keep_and_missing(tmp_path):
  d = str(tmp_path / "ckpt")
  ckpt = Checkpointer(d, max_to_keep=2)
  with pytest.raises(FileNotFoundError):
    ckpt.restore(target={"x": jnp.zeros(2)})
  for step in (1, 2, 3, 4):
    ckpt.save(step, {"x": jnp.full((2,), step, jnp.float32)})
  ckpt.wait()
  assert ckpt.all_steps() == [3, 4]
  assert ckpt.latest_step() == 4
  got = ckpt.restore(3, target={"x": jnp.zeros(2)})
  np.testing.assert_array_equal(got["x"], [3.0, 3.0])
  with pytest.raises(FileNotFoundError):
    ckpt.restore(1, target={"x": jnp.zeros(2)})
  ckpt.close()
