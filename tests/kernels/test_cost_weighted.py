"""Cost-weighted selection (CWMP greedy knapsack) against its reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import kernels
from sparsejax.kernels import cost_weighted
from sparsejax.kernels import reference
from tests.kernels.conftest import KINDS, assert_same, make_input

fast = jax.jit(functools.partial(cost_weighted.cost_weighted_select_impl,
                                 small_n=0),
               static_argnames=("power", "max_count"))
ref = jax.jit(reference.cost_weighted_select_reference,
              static_argnames=("power", "max_count"))


def _costs(n, seed=0):
  # Small integers: float32 cumulative sums are exact in any order, so the
  # greedy boundary is well defined (see the module docstring).
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(1, 5, n).astype(np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("n,max_count", [
    (1, None), (97, None), (97, 10), (4099, 300), (20011, 1500)])
def test_cost_weighted_matches_reference(n, max_count):
  cost = _costs(n)
  for kind in KINDS:
    x = make_input(kind, n, jnp.float32)
    for budget in (0.0, 3.0, n / 50, n / 3, 10.0 * n):  # traced budgets
      budget = jnp.float32(budget)
      got, want = fast(x, cost, budget, max_count=max_count), ref(
          x, cost, budget, max_count=max_count)
      assert_same(got, want, f"{kind} n={n} mc={max_count} b={budget}")
      assert float(got[3]) <= float(budget)


@pytest.mark.slow
@pytest.mark.parametrize("power,dtype", [(0.5, jnp.bfloat16),
                                         (2.0, jnp.float16)])
def test_cost_weighted_power_and_half(power, dtype):
  n = 3001
  cost = _costs(n, 1)
  for kind in KINDS:
    x = make_input(kind, n, dtype)
    b = jnp.float32(n / 4)
    assert_same(fast(x, cost, b, power=power, max_count=900),
                ref(x, cost, b, power=power, max_count=900), f"{kind}")


@pytest.mark.slow
def test_equal_costs_give_the_top_k_set():
  n, k = 5003, 200
  for kind in ("ties", "special"):
    x = make_input(kind, n, jnp.float32)
    _, idx, count, spent = fast(x, 1.0, float(k), max_count=k)
    _, top = kernels.top_k_select(x, k)
    assert int(count) == k and float(spent) == k
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(top))
    # Scalar cost 0.5: twice as many fit (the first k of them are the top-k).
    _, idx, count, _ = fast(x, 0.5, float(k) / 2, max_count=k)
    assert int(count) == k
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(top))
    # Equal vector costs: the selected set is the top-k set.
    _, idx, count, _ = fast(x, jnp.full((n,), 2.0), 2.0 * k, max_count=k)
    assert int(count) == k
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(top))


@pytest.mark.slow
def test_overflow_reports_true_count():
  n = 9001
  x = make_input("normal", n, jnp.float32)
  cost = _costs(n, 2)
  got = fast(x, cost, jnp.float32(n), max_count=50)
  want = ref(x, cost, jnp.float32(n), max_count=50)
  assert_same(got, want)
  assert int(got[2]) > 50


@pytest.mark.slow
def test_public_and_vmap():
  n = 2000
  x = jnp.stack([make_input(kind, n, jnp.float32) for kind in KINDS[:3]])
  cost = _costs(n, 3)
  budgets = jnp.array([10.0, 100.0, 1000.0], jnp.float32)
  got = jax.vmap(lambda v, b: fast(v, cost, b, max_count=300))(x, budgets)
  want = jax.vmap(lambda v, b: ref(v, cost, b, max_count=300))(x, budgets)
  assert_same(got, want)
  got = jax.vmap(lambda v, b: kernels.cost_weighted_select(
      v, cost, b, max_count=300))(x, budgets)
  assert_same(got, want)


def test_bad_max_count():
  with pytest.raises(ValueError, match="max_count"):
    kernels.cost_weighted_select(jnp.ones((10,)), 1.0, 1.0, max_count=-2)
