"""Cost-weighted selection whose greedy prefix overflows the buffer.

Then the true count and spent come from a radix search over the whole vector
(vector costs) or a closed form (a scalar cost); both against the reference.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.kernels import cost_weighted
from sparsejax.kernels import reference
from tests.kernels.conftest import KINDS, assert_same, make_input

fast = jax.jit(functools.partial(cost_weighted.cost_weighted_select_impl,
                                 small_n=0),
               static_argnames=("power", "max_count"))
ref = jax.jit(reference.cost_weighted_select_reference,
              static_argnames=("power", "max_count"))


@pytest.mark.slow
@pytest.mark.parametrize("n", [4096, 4099])
def test_vector_costs_ties_at_the_budget_boundary(n):
  rng = np.random.default_rng(n)
  for costs in (rng.integers(1, 5, n), rng.integers(0, 3, n)):  # with zeros
    cost = jnp.asarray(costs.astype(np.float32))
    total = float(costs.sum())
    for kind in KINDS:
      x = make_input(kind, n, jnp.float32)
      # Budgets through the whole range, most of them inside tie groups.
      for budget in (-1.0, 0.0, 1.0, 33.0, total / 7, total / 2 + 0.5,
                     total - 1, total, 2 * total):
        got = fast(x, cost, jnp.float32(budget), max_count=8)
        assert_same(got, ref(x, cost, jnp.float32(budget), max_count=8),
                    f"{kind} n={n} budget={budget}")


@pytest.mark.slow
def test_vector_costs_digits_of_every_size():
  # Scores spread over many binades, so that every radix digit matters.
  n = 20011
  rng = np.random.default_rng(1)
  x = jnp.asarray((rng.standard_normal(n) * 10.0 ** rng.integers(
      -30, 30, n)).astype(np.float32))
  cost = jnp.asarray(rng.integers(1, 9, n).astype(np.float32))
  for budget in (5.0, 100.0, 2000.0, 30000.0, 80000.0):
    for power in (0.5, 1.0, 2.0):
      assert_same(fast(x, cost, jnp.float32(budget), power=power,
                       max_count=3),
                  ref(x, cost, jnp.float32(budget), power=power, max_count=3),
                  f"budget={budget} power={power}")


@pytest.mark.parametrize("cost", [0.5, 1.0, 3.0, 0.0])
def test_scalar_cost(cost):
  n = 5003
  for kind in ("normal", "ties", "nan_heavy"):
    x = make_input(kind, n, jnp.float32)
    for budget in (-1.0, 0.0, 10.0, 999.0, 1e5):
      got = fast(x, cost, jnp.float32(budget), max_count=5)
      assert_same(got, ref(x, cost, jnp.float32(budget), max_count=5),
                  f"{kind} cost={cost} budget={budget}")
