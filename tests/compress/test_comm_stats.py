"""``comm_stats``: exact host counts, and states held by flax's nnx.Optimizer."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax.compress import BitCount
from sparsejax.compress.accounting import CommCounters

COUNTS = ("steps", "elements_sent", "bits_sent", "last_elements", "last_bits",
          "overflow", "nonfinite_steps", "internal_nonfinite_steps")
FLOATS = ("total_error", "residual_norm", "bytes_sent")


def _ef_state(steps=3):
  tx = optax.chain(sj.error_feedback(sj.top_k(k=2)), optax.sgd(0.1))
  params = {"w": jnp.zeros(5)}
  state = tx.init(params)
  for t in range(steps):
    _, state = tx.update({"w": jnp.arange(5.0) - t}, state, params)
  return state


@pytest.mark.slow
def test_exact_gives_python_numbers_equal_to_the_float_view():
  state = _ef_state()
  view, host = sj.comm_stats(state), sj.comm_stats(state, exact=True)
  assert sorted(host) == sorted(view) == sorted(COUNTS + FLOATS)
  for name in COUNTS:
    assert type(host[name]) is int, name
    assert host[name] == float(view[name]), name
  for name in FLOATS:
    assert type(host[name]) is float, name
    assert host[name] == pytest.approx(float(view[name]), rel=1e-6), name
  assert (host["steps"], host["elements_sent"], host["bits_sent"]) == (3, 6, 384)
  assert host["bytes_sent"] == 48.0


def test_exact_counts_beyond_float32():
  big = BitCount(jnp.uint32(1), jnp.uint32(3))  # 2**32 + 3 bits
  counters = CommCounters.zero()._replace(bits=big, steps=jnp.int32(7))
  host = sj.comm_stats((counters, counters), exact=True)
  assert host["bits_sent"] == 2 * (2**32 + 3)
  assert host["bytes_sent"] == (2**32 + 3) / 4
  assert host["steps"] == 7  # combined by "max"
  assert float(sj.comm_stats(counters)["bits_sent"]) != 2**32 + 3


@pytest.mark.slow
def test_exact_array_counts_are_object_arrays_of_ints():
  stacked = jax.tree.map(lambda *x: jnp.stack(x), _ef_state(1), _ef_state(2))
  host = sj.comm_stats(stacked, exact=True)
  assert host["bits_sent"].dtype == object
  assert host["bits_sent"].tolist() == [128, 256]
  assert host["steps"].tolist() == [1, 2]
  assert host["total_error"].dtype == np.float32


def test_exact_refused_under_jit():
  state = _ef_state()
  jax.jit(sj.comm_stats)(state)  # the float view is jit-safe
  with pytest.raises(ValueError, match="outside jit"):
    jax.jit(lambda s: sj.comm_stats(s, exact=True))(state)


def test_exact_on_a_float_view_says_to_use_exact_true():
  with pytest.raises(TypeError, match="exact=True"):
    sj.exact(sj.comm_stats(_ef_state())["bits_sent"])


class _Linear(nnx.Module):

  def __init__(self):
    self.w = nnx.Param(jnp.zeros((3, 4)))
    self.b = nnx.Param(jnp.zeros(4))


def _gradient(model):
  """A loss linear in the params: its gradient does not depend on them."""
  c = jnp.arange(12.0).reshape(3, 4) - 5.5
  return nnx.grad(lambda m: jnp.sum(m.w[...] * c) + jnp.sum(m.b[...]))(model)


def _tx():
  return optax.chain(sj.error_feedback(sj.top_k(k=3, scope="global")),
                     optax.adam(1e-2))


@pytest.mark.slow
def test_nnx_optimizer_state_is_found_with_plain_optax_numbers():
  model = _Linear()
  optimizer = nnx.Optimizer(model, _tx(), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    optimizer.update(model, _gradient(model))
    return sj.comm_stats(optimizer.opt_state)  # traced, inside nnx.jit

  for _ in range(3):
    traced = step(model, optimizer)

  grads = {"b": jnp.ones(4), "w": jnp.arange(12.0).reshape(3, 4) - 5.5}
  params = {"b": jnp.zeros(4), "w": jnp.zeros((3, 4))}
  tx = _tx()
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  expected = sj.comm_stats(state, exact=True)
  assert expected["bits_sent"] == 3 * 3 * 64

  for source in (optimizer.opt_state, optimizer):
    stats = sj.comm_stats(source)
    assert all(isinstance(v, jax.Array) for v in stats.values())
    assert sj.comm_stats(source, exact=True) == pytest.approx(expected)
  assert float(traced["bits_sent"]) == expected["bits_sent"]
  np.testing.assert_allclose(model.w[...], params["w"], rtol=1e-6)


def test_nnx_state_of_an_optimizer_is_refused_with_advice():
  optimizer = nnx.Optimizer(_Linear(), _tx(), wrt=nnx.Param)
  with pytest.raises(ValueError, match=r"nnx.state.*optimizer.opt_state"):
    sj.comm_stats(nnx.state(optimizer))
  with pytest.raises(ValueError, match="no sparsejax compressor state found"):
    sj.comm_stats({"w": jnp.zeros(3)})
