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
   count found over the whole vector: with one scalar cost in closed form,
   else by a radix search of the score key at which the cost runs out (cost
   histograms by scatter-add, three digits) and the tie prefix by row prefix
   sums. Temporary memory stays under 2x the input in both branches.

Costs must be non-negative. Cumulative costs are float32 sums: when costs are
not exactly summable in float32 (e.g. integers or dyadic fractions with small
totals are), the element at the budget boundary and ``spent`` can differ from
the reference by the rounding of the sums (and on GPU, where scatter-adds are
atomic, from run to run).
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


def _score(x, cost, power, per_cost=True):
  score = reference._rank_key(x) ** power  # pylint: disable=protected-access
  if per_cost:
    score = score / cost
  # lax.select, not jnp.where (a nested jit): XLA then fuses the score into
  # its consumers instead of writing it out.
  return lax.select(jnp.isnan(x), jnp.full(score.shape, -1.0, score.dtype),
                    score)


def _masked_sums(mask: jax.Array, cost: jax.Array, axis: int):
  """(cost, count) of the masked entries along ``axis``.

  One variadic reduce, both results used: XLA:CPU fuses the masking into it
  (even over a whole vector it is as fast as a count), while a lone float sum
  becomes a library call that needs the masked costs written out.
  """
  masked = lax.select(mask, cost, jnp.zeros(mask.shape))
  return lax.reduce((masked, mask.astype(jnp.int32)),
                    (jnp.float32(0), jnp.int32(0)),
                    lambda a, b: (a[0] + b[0], a[1] + b[1]), (axis,))


# Digits (shift, bits) of the radix search for the overflow threshold.
_DIGITS = ((21, 11), (10, 11), (0, 10))


def _cost_histogram(digits: jax.Array, cost: jax.Array, bits: int):
  """``hist[d]`` = cost of the entries whose uint16 digit is ``d``.

  One scatter-add; digits ``>= 2**bits`` are dropped. ``lax.scatter_add``
  keeps the uint16 indices (``.at[].add`` would widen them to int32).
  """
  dnums = lax.ScatterDimensionNumbers(update_window_dims=(),
                                      inserted_window_dims=(0,),
                                      scatter_dims_to_operand_dims=(0,))
  return lax.scatter_add(jnp.zeros((1 << bits,), jnp.float32),
                         digits[:, None], cost, dnums,
                         mode=lax.GatherScatterMode.FILL_OR_DROP)


def _overflow_count_equal_costs(n: int, cost: jax.Array, budget):
  """(count, spent) of the greedy prefix when every entry costs ``cost``."""
  fit = jnp.floor(budget / jnp.where(cost > 0, cost, 1.0))
  count = jnp.where(cost > 0, jnp.clip(fit, 0, n), jnp.where(budget >= 0, n, 0))
  count = count.astype(jnp.int32)
  return count, count.astype(jnp.float32) * cost


def _overflow_count(x: jax.Array, cost: jax.Array, budget, power, per_cost):
  """Exact (count, spent) of the greedy prefix over the whole vector.

  ``s_e``, the largest key with ``cost(key >= s_e) > budget``, by a radix
  search: per digit (11, 11, 10 bits), a cost histogram of the digits of the
  keys that share the prefix found so far (one scatter-add over the vector)
  and its suffix sums give the next digit. Every key above ``s_e`` is taken
  (one pass of masked sums), and the keys equal to it in index order while
  the cumulative cost fits: whole rows of 32 by a prefix sum of their row
  sums, then the row where the budget runs out entry by entry. Besides the
  score keys, the largest temporary is one uint16 digit per entry.

  ``cost`` is a vector of ``n``.
  """
  n = x.shape[0]
  skey = c.float_order_key(_score(x, cost, power, per_cost))
  prefix, above = jnp.uint32(0), jnp.float32(0)
  for i, (shift, bits) in enumerate(_DIGITS):
    digit = (skey >> shift) & jnp.uint32((1 << bits) - 1)
    if shift + bits < 32:  # only the keys in the bin found so far
      top = shift + bits
      digit = jnp.where(skey >> top == prefix >> top, digit, 1 << bits)
    # sums[d] = cost of the keys >= prefix | d << shift.
    sums = jnp.cumsum(_cost_histogram(digit.astype(jnp.uint16), cost,
                                      bits)[::-1])[::-1] + above
    d = c.total((sums > budget).astype(jnp.int32)) - 1
    if i == 0:
      everything = d < 0                 # even the smallest key fits
    d = jnp.maximum(d, 0)
    above = jnp.where(d + 1 < 1 << bits,
                      sums[jnp.minimum(d + 1, (1 << bits) - 1)], above)
    prefix = prefix | (d.astype(jnp.uint32) << shift)
  s_e = jnp.where(everything, jnp.uint32(0), prefix)
  cost_gt, count_gt = map(c.total, _masked_sums(skey > s_e, cost, 0))
  # Ties at s_e in index order, on a (rows, 32) view (read through a fused
  # gather when n is ragged: XLA:CPU would write a padded copy out).
  rows = -(-n // c.ROW)
  index = (lax.broadcasted_iota(jnp.int32, (rows, c.ROW), 0) * c.ROW +
           lax.broadcasted_iota(jnp.int32, (rows, c.ROW), 1))
  inside = index < n

  def view(a):
    if n % c.ROW == 0:
      return a.reshape(rows, c.ROW)
    return a[jnp.minimum(index, n - 1)]

  eq_cost, eq_count = _masked_sums((view(skey) == s_e) & inside, view(cost), 1)
  # The leading rows whose ties all fit ...
  cum = cost_gt + jnp.cumsum(eq_cost)
  full = cum <= budget                   # a prefix of the rows (costs >= 0)
  full_rows = c.total(full.astype(jnp.int32))
  count_eq = c.total(jnp.where(full, eq_count, 0))
  spent_eq = c.total(jnp.where(full, eq_cost, 0.0))
  # ... then the first row that does not fit, entry by entry.
  r = jnp.minimum(full_rows, rows - 1)
  before = jnp.where(r > 0, cum[jnp.maximum(r - 1, 0)], cost_gt)
  pos = r * c.ROW + jnp.arange(c.ROW, dtype=jnp.int32)
  at = jnp.minimum(pos, n - 1)
  row_eq = (skey[at] == s_e) & (pos < n) & (full_rows < rows)
  row_cost = jnp.where(row_eq, cost[at], 0.0)
  take = row_eq & (before + jnp.cumsum(row_cost) <= budget)
  count_eq = count_eq + jnp.sum(take, dtype=jnp.int32)
  spent_eq = spent_eq + jnp.sum(jnp.where(take, row_cost, 0.0))
  count = jnp.where(everything, jnp.int32(n), count_gt + count_eq)
  spent = jnp.where(everything, cost_gt, cost_gt + spent_eq)
  return count.astype(jnp.int32), spent


@functools.partial(jax.jit,
                   static_argnames=("power", "max_count", "per_cost"))
def cost_weighted_select(x: jax.Array, cost, budget, power: float = 1.0,
                         max_count: int | None = None, per_cost: bool = True):
  """Greedy knapsack of CWMP: ``(values, indices, count, spent)``.

  Same semantics as :func:`reference.cost_weighted_select_reference`: the
  buffer holds the selection in visiting order (decreasing score, ties to
  the lower index), ``count`` is the true size of the selection and ``spent``
  its total cost. ``cost`` is a scalar or a vector of ``n``; ``budget`` may be
  traced; ``power``, ``max_count`` and ``per_cost`` (``False``: visit by
  ``|x|**power`` alone) are static.
  """
  return cost_weighted_select_impl(x, cost, budget, power, max_count,
                                   per_cost=per_cost)


def cost_weighted_select_impl(x, cost, budget, power=1.0, max_count=None,
                              small_n: int = topk.SMALL_N,
                              pallas: dict | None | str = "auto",
                              per_cost: bool = True):
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
                                                    max_count, per_cost)
  if pallas == "auto":
    pallas = pallas_gpu.default_config()
  order = topk.top_key_indices(
      lambda xs, cs: c.float_order_key(_score(xs, cs, power, per_cost)),
      (x, cost),
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
        lambda: (_overflow_count_equal_costs(n, cost_in, budget)
                 if cost_in.ndim == 0 else
                 _overflow_count(x, cost, budget, power, per_cost)),
        lambda: (count_buf, spent_buf))
  else:
    count, spent = count_buf, spent_buf
  idx = jnp.where(fits, order, n).astype(jnp.int32)
  values = c.gather_or_zero(x, idx)
  if max_count > size:
    values = jnp.pad(values, (0, max_count - size))
    idx = jnp.pad(idx, (0, max_count - size), constant_values=n)
  return values, idx, count, spent
