"""Shared building blocks of the selection kernels (XLA formulations).

Everything here works on *uint32 order keys*: an order-preserving integer
image of the quantity being ranked, so that the comparisons are exact and
total (denormals ordered, ``-0 == 0``, NaN placed where the reference puts it)
and the reductions vectorise on CPU. Key 0 is reserved for padding.

Two XLA-on-CPU facts shape the code (measured on the 2-core build machine):
a reduction of a whole vector to a scalar runs as one slow scalar loop, while
a reduction along the minor axis of a 2-D view is vectorised and threaded;
and ``cumsum`` over long vectors is slow. So counts are always "row counts of
a ``(rows, W)`` view, then a sum of the (short) row counts" with an
``optimization_barrier`` so XLA cannot fuse the two back into one scalar
reduction, and prefix sums only run over row counts, never over elements.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
from jax import lax

# Width of the 2-D views used for counting and compaction.
ROW = 32


def check_int(value, name: str, low: int, high: int | None = None) -> int:
  """``value`` as a Python int in ``[low, high]`` or ValueError naming it."""
  try:
    ivalue = operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be a Python int, got {value!r}") from None
  if ivalue < low or (high is not None and ivalue > high):
    bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
    raise ValueError(f"{name} must be in {bounds}, got {ivalue}")
  return ivalue


def check_vector(x) -> None:
  if x.ndim != 1:
    raise ValueError(f"x must be a flat vector, got shape {x.shape}")


def round_up(a: int, b: int) -> int:
  return -(-a // b) * b


def magnitude_key(x: jax.Array) -> jax.Array:
  """uint32 key of ``|x|`` in the reference's top-k order.

  Padding 0 < NaN 1 < every number (``bits(|x|) + 2``); computed from the same
  ``abs(x).astype(float32)`` as the reference so it sees the same bits.
  """
  mag = jnp.abs(x).astype(jnp.float32)
  bits = lax.bitcast_convert_type(mag, jnp.uint32) & jnp.uint32(0x7FFFFFFF)
  # lax.select, not jnp.where: jnp.where is a nested jit, and XLA then writes
  # the keys out instead of fusing them into each consumer.
  return lax.select(bits > jnp.uint32(0x7F800000),
                    jnp.full(bits.shape, 1, jnp.uint32), bits + jnp.uint32(2))


def float_order_key(s: jax.Array) -> jax.Array:
  """uint32 key, increasing with float32 ``s``; ``-0 == 0``; NaN 1; pad 0.

  This is the order ``jnp.argsort`` uses (NaN after everything when sorting
  ascending) turned around: larger key = earlier in a descending visit.
  """
  s = s.astype(jnp.float32)
  bits = lax.bitcast_convert_type(s, jnp.uint32)
  mag = bits & jnp.uint32(0x7FFFFFFF)
  pos = mag | jnp.uint32(0x80000000)          # s >= 0 (and -0 -> +0)
  neg = jnp.uint32(0x80000000) - mag          # s < 0: more negative, smaller
  key = jnp.where(bits >> 31 == 0, pos, jnp.where(mag == 0, pos, neg))
  return jnp.where(mag > jnp.uint32(0x7F800000), jnp.uint32(1), key)


def pad_to(a: jax.Array, length: int, value) -> jax.Array:
  if a.shape[0] == length:
    return a
  return jnp.pad(a, (0, length - a.shape[0]), constant_values=value)


def row_counts(mask2d: jax.Array) -> jax.Array:
  return jnp.sum(mask2d, axis=1, dtype=jnp.int32)


def total(row_values: jax.Array) -> jax.Array:
  """Sum of per-row results, kept apart from the row reduction (see above)."""
  return jnp.sum(lax.optimization_barrier(row_values))


def count_ge(key2d: jax.Array, t: jax.Array) -> jax.Array:
  return total(row_counts(key2d >= t))


def kth_largest(key2d: jax.Array, k) -> jax.Array:
  """Largest ``v`` with ``count(key >= v) >= k`` (the k-th largest key).

  Bitwise binary search from the top bit: 32 counting passes over ``key2d``.
  ``k`` may be traced; requires ``1 <= k <= key2d.size``.
  """

  def body(i, v):
    cand = v | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    return jnp.where(count_ge(key2d, cand) >= k, cand, v)

  return lax.fori_loop(0, 32, body, jnp.uint32(0))


def row_bits(mask2d: jax.Array) -> jax.Array:
  """Pack each row of a ``(rows, 32)`` bool mask into a uint32 (bit j = col j)."""
  col = lax.broadcasted_iota(jnp.uint32, mask2d.shape, 1)
  return jnp.sum(jnp.where(mask2d, jnp.uint32(1) << col, jnp.uint32(0)),
                 axis=1, dtype=jnp.uint32)


def select_bit(word: jax.Array, rank: jax.Array) -> jax.Array:
  """Position of the ``rank``-th (0-based) set bit of each uint32 ``word``."""
  pos = jnp.zeros(word.shape, jnp.int32)
  for width in (16, 8, 4, 2, 1):
    low = lax.population_count(word & jnp.uint32((1 << width) - 1))
    low = low.astype(jnp.int32)
    go = rank >= low
    rank = jnp.where(go, rank - low, rank)
    pos = jnp.where(go, pos + width, pos)
    word = jnp.where(go, word >> width, word)
  return pos


def locate_bits(bits: jax.Array, j: jax.Array):
  """Flat positions of the ``j``-th set bits (0-based, index order).

  ``bits`` are packed row words (see :func:`row_bits`); ``j`` an int32
  vector of ranks. Returns ``(flat, valid, count)`` with ``valid = j <
  count``. The prefix sum of the row popcounts (short) and a binary search
  give each rank its row, a popcount search the bit in the row.
  """
  rows = bits.shape[0]
  rc = lax.population_count(bits).astype(jnp.int32)
  incl = jnp.cumsum(rc)
  count = incl[-1]
  r = jnp.searchsorted(incl, j, side="right", method="scan_unrolled")
  r = jnp.minimum(r, rows - 1).astype(jnp.int32)
  rank = j - (incl[r] - rc[r])
  return r * ROW + select_bit(bits[r], rank), j < count, count


def compact_bits(bits: jax.Array, size: int):
  """First ``size`` set positions of packed row words, ascending.

  Like :func:`locate_bits` for ranks ``0..size-1``, but the row of each rank
  comes from a scatter of each non-empty row's first rank and a running
  maximum (several times faster on CPU than a binary search per rank).
  """
  rows = bits.shape[0]
  rc = lax.population_count(bits).astype(jnp.int32)
  incl = jnp.cumsum(rc)
  excl = incl - rc
  count = incl[-1]
  starts = jnp.where(rc > 0, excl, size)
  marks = jnp.zeros((size,), jnp.int32).at[starts].set(
      jnp.arange(rows, dtype=jnp.int32), mode="drop", unique_indices=True)
  r = lax.cummax(marks)
  j = jnp.arange(size, dtype=jnp.int32)
  rank = j - excl[r]
  valid = j < count
  return r * ROW + select_bit(bits[r], jnp.maximum(rank, 0)), valid, count


def compact(mask2d: jax.Array, size: int):
  """Flat positions of the first ``size`` True entries, ascending."""
  return compact_bits(row_bits(mask2d), size)


def top_positions(key: jax.Array, k: int) -> jax.Array:
  """Flat positions (ascending) of the k largest keys, ties to lower position.

  ``key`` is a flat uint32 vector whose length is a multiple of 32. Finds the
  k-th largest key ``t`` by bisection, keeps every key ``> t`` and the first
  ``k - count(> t)`` keys ``== t``, then compacts.
  """
  key2d = key.reshape(-1, ROW)
  t = kth_largest(key2d, k)
  gt = key2d > t
  eq = key2d == t
  gt_bits = row_bits(gt)
  eq_bits = row_bits(eq)
  need = k - total(lax.population_count(gt_bits).astype(jnp.int32))
  last_eq, _, _ = locate_bits(eq_bits, (need - 1)[None])
  # Keep the equal keys up to and including position last_eq.
  row = jnp.arange(eq_bits.shape[0], dtype=jnp.int32)
  last_row, last_col = last_eq[0] // ROW, last_eq[0] % ROW
  upto = jnp.where(last_col == 31, jnp.uint32(0xFFFFFFFF),
                   (jnp.uint32(2) << last_col.astype(jnp.uint32)) - 1)
  keep_eq = jnp.where(row < last_row, eq_bits,
                      jnp.where(row == last_row, eq_bits & upto, 0))
  pos, _, _ = compact_bits(gt_bits | keep_eq, k)
  return pos


TIE_ROUNDS = 12


def sort_desc(keys: jax.Array, idx: jax.Array):
  """``idx`` reordered by decreasing key, ties by increasing ``idx``.

  ``idx`` must be ascending. A one-operand sort of the keys (on CPU several
  times faster than a two-operand sort) and a binary search give each entry
  the first slot of its group of equal keys; the rank inside a group (in
  index order) is found by rounds of scatter-min (one round per member of the
  largest group). More than ``TIE_ROUNDS`` equal keys fall back to a stable
  two-key sort.
  """
  k = keys.shape[0]
  if k == 1:
    return idx
  asc = lax.sort(keys)
  hi = jnp.searchsorted(asc, keys, side="right", method="scan_unrolled")
  lo = jnp.searchsorted(asc, keys, side="left", method="scan_unrolled")
  first = (k - hi).astype(jnp.int32)       # first slot of the group
  pos = jnp.arange(k, dtype=jnp.int32)
  big = jnp.int32(k)

  def cond(state):
    _, remaining, r = state
    return (r < TIE_ROUNDS) & jnp.any(remaining)

  def body(state):
    rank, remaining, r = state
    best = jnp.full((k,), big).at[first].min(jnp.where(remaining, pos, big))
    won = remaining & (best[first] == pos)
    return jnp.where(won, r, rank), remaining & ~won, r + 1

  group = hi - lo
  # A group larger than TIE_ROUNDS goes to the sort: skip the rounds.
  start = jnp.where(total(jnp.max(group.reshape(1, -1), axis=1)) > TIE_ROUNDS,
                    jnp.int32(TIE_ROUNDS), jnp.int32(0))
  rank, remaining, _ = lax.while_loop(
      cond, body, (jnp.zeros((k,), jnp.int32), group > 1, start))

  def by_slots():
    return jnp.zeros_like(idx).at[first + rank].set(idx, unique_indices=True)

  def by_sort():
    return lax.sort((~keys, idx), num_keys=2)[1]

  return lax.cond(jnp.any(remaining), by_sort, by_slots)


def gather_or_zero(x: jax.Array, idx: jax.Array) -> jax.Array:
  n = x.shape[0]
  return jnp.where(idx < n, x[jnp.minimum(idx, n - 1)], 0).astype(x.dtype)
