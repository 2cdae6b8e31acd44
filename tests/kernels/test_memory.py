"""Compiled temporary memory of the kernels: at most 2x the input.

XLA's buffer assignment is deterministic, so this is a unit test, not a
benchmark. The compiled cost-weighted selection includes its overflow branch
(both branches of the ``lax.cond`` are compiled); ragged lengths check that
no padded copy of the inputs is written out.
"""

import jax
import jax.numpy as jnp
import pytest

from sparsejax import kernels

N = 1 << 20


def _temp_over_input(fn, *args):
  analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
  if analysis is None:
    pytest.skip("no memory analysis on this backend")
  return analysis.temp_size_in_bytes / args[0].nbytes


@pytest.mark.parametrize("n", [N, N + 5])
@pytest.mark.parametrize("ratio", [0.001, 0.01])
def test_cost_weighted_within_twice_the_input(n, ratio):
  k = int(ratio * n)
  x = jnp.zeros((n,), jnp.float32)
  for cost in (jnp.ones((n,), jnp.float32), jnp.float32(2.0)):
    used = _temp_over_input(
        lambda v, c, b: kernels.cost_weighted_select(v, c, b, max_count=k),
        x, cost, jnp.float32(k))
    assert used <= 2.0, (n, ratio, cost.shape, used)


@pytest.mark.slow
@pytest.mark.parametrize("n", [N, N + 5])
def test_top_k_and_blockwise_within_twice_the_input(n):
  x = jnp.zeros((n,), jnp.float32)
  # k <= 1% (the targets; above ~5%, sorting the k winners dominates).
  for k in (n // 1000, n // 100):
    assert _temp_over_input(lambda v: kernels.top_k_select(v, k), x) <= 2.0
    assert _temp_over_input(
        lambda v: kernels.blockwise_top_k_select(v, k, 1024), x) <= 2.0
