"""Cost-weighted magnitude pruning (CWMP) by threshold search, not a sort.

The greedy knapsack visits entries by decreasing ``score = |x|**power / cost``
(ties to the lower index) and keeps the longest prefix whose cumulative cost
is ``<= budget``. Its first ``B = min(max_count, n)`` visits are exactly the
top-``B`` entries by score, so:

1. ``score`` is computed exactly as the reference does and mapped to an
   order-preserving uint32 key (NaN score last, ``-0 == 0``);
2. the top-``B`` keys are found with the exact top-k machinery of
   :mod:`topk` (max filter + bisection + compaction, sorted in visiting
   order);
3. the cumulative cost over those ``B`` entries gives the selection, count and
   spent whenever the greedy prefix ends inside the buffer;
4. only if all ``B`` fit (the selection overflows the buffer) is the true
   count found by a bisection over the score bits on the whole vector, with
   the cost sums done as row sums, and the tie prefix by row prefix sums.

Costs must be non-negative. Cumulative costs are float32 sums: when costs are
not exactly summable in float32 (e.g. integers or dyadic fractions with small
totals are), the element at the budget boundary and ``spent`` can differ from
the reference by the rounding of the sums.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from sparsejax.kernels import _common as c
from sparsejax.kernels import pallas_gpu
from sparsejax.kernels import reference
from sparsejax.kernels import topk


def _score(x, cost, power):
  score = reference._rank_key(x) ** power / cost  # pylint: disable=protected-access
  return jnp.where(jnp.isnan(x), -1.0, score)


def _overflow_count(skey: jax.Array, cost: jax.Array, budget):
  """Exact (count, spent) of the greedy prefix over the whole vector."""
  n = skey.shape[0]
  length = c.round_up(n, c.ROW)
  key2d = c.pad_to(skey, length, 0).reshape(-1, c.ROW)
  cost2d = c.pad_to(cost, length, 0.0).reshape(-1, c.ROW)

  def cost_ge(t):
    return c.total(jnp.sum(jnp.where(key2d >= t, cost2d, 0.0), axis=1))

  # s_e = largest key value with cost(key >= s_e) > budget.
  def body(i, v):
    cand = v | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    return jnp.where(cost_ge(cand) > budget, cand, v)

  all_cost = cost_ge(jnp.uint32(1))
  s_e = lax.fori_loop(0, 32, body, jnp.uint32(0))
  gt = key2d > s_e
  cost_gt = c.total(jnp.sum(jnp.where(gt, cost2d, 0.0), axis=1))
  count_gt = c.total(c.row_counts(gt))
  # Ties at s_e, in index order: prefix sums of their costs.
  eq_cost = jnp.where(key2d == s_e, cost2d, 0.0)
  row_sum = jnp.sum(eq_cost, axis=1)
  row_excl = jnp.cumsum(row_sum) - row_sum
  prefix = cost_gt + (row_excl[:, None] + jnp.cumsum(eq_cost, axis=1))
  take = (key2d == s_e) & (prefix <= budget)
  count_eq = c.total(c.row_counts(take))
  spent_eq = c.total(jnp.sum(jnp.where(take, cost2d, 0.0), axis=1))
  everything = all_cost <= budget
  count = jnp.where(everything, jnp.int32(n), count_gt + count_eq)
  spent = jnp.where(everything, all_cost, cost_gt + spent_eq)
  return count.astype(jnp.int32), spent


@functools.partial(jax.jit, static_argnames=("power", "max_count"))
def cost_weighted_select(x: jax.Array, cost, budget, power: float = 1.0,
                         max_count: int | None = None):
  """Greedy knapsack of CWMP: ``(values, indices, count, spent)``.

  Same semantics as :func:`reference.cost_weighted_select_reference`: the
  buffer holds the selection in visiting order (decreasing score, ties to
  the lower index), ``count`` is the true size of the selection and ``spent``
  its total cost. ``cost`` is a scalar or a vector of ``n``; ``budget`` may be
  traced; ``power`` and ``max_count`` are static.
  """
  return cost_weighted_select_impl(x, cost, budget, power, max_count)


def cost_weighted_select_impl(x, cost, budget, power=1.0, max_count=None,
                              small_n: int = topk.SMALL_N,
                              pallas: dict | None | str = "auto"):
  """Unjitted :func:`cost_weighted_select`; ``small_n``: reference cut-off.

  ``pallas`` as in :func:`topk.top_k_select_impl` (used for the top-B step).
  """
  c.check_vector(x)
  n = x.shape[0]
  max_count = n if max_count is None else c.check_int(max_count, "max_count",
                                                       0)
  cost_in = jnp.asarray(cost, jnp.float32)
  cost = jnp.broadcast_to(cost_in, (n,))
  budget = jnp.asarray(budget, jnp.float32)
  size = min(max_count, n)
  if size == 0 or n <= small_n:
    return reference.cost_weighted_select_reference(x, cost, budget, power,
                                                    max_count)
  if pallas == "auto":
    pallas = pallas_gpu.default_config()
  order = topk.top_key_indices(
      lambda xs, cs: c.float_order_key(_score(xs, cs, power)), (x, cost),
      size, n, pallas)
  visited_cost = cost[order]
  fits = jnp.cumsum(visited_cost) <= budget
  count_buf = c.total(fits.astype(jnp.int32).reshape(1, -1).sum(axis=1))
  spent_buf = jnp.sum(jnp.where(fits, visited_cost, 0.0))
  if size < n:
    # The scores are recomputed inside the branch: cond operands are written
    # out in full, which would cost more than the whole fast path.
    count, spent = lax.cond(
        fits[-1],
        lambda: _overflow_count(
            c.float_order_key(_score(x, cost_in, power)),
            jnp.broadcast_to(cost_in, (n,)), budget),
        lambda: (count_buf, spent_buf))
  else:
    count, spent = count_buf, spent_buf
  idx = jnp.where(fits, order, n).astype(jnp.int32)
  values = c.gather_or_zero(x, idx)
  if max_count > size:
    values = jnp.pad(values, (0, max_count - size))
    idx = jnp.pad(idx, (0, max_count - size), constant_values=n)
  return values, idx, count, spent
