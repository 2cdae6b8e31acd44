"""Exact top-k by |x| without a full sort: hierarchical max filter + bisection.

Algorithm (XLA; every backend):

1. Order keys ``u = bits(|x|) + 2`` (uint32, NaN -> 1, padding -> 0) so that
   integer order is the reference order and comparisons are exact.
2. View ``u`` as ``m`` rows of ``R`` and take the row maxima (one vectorised
   read). At most ``k`` rows hold a top-k entry, and the top ``k`` rows by
   (row max desc, row asc) hold all of them: a row holding a top-k entry has
   its maximum in the top-k too, and with contiguous rows the lower-index tie
   rule on entries is the lower-row tie rule on row maxima.
3. Select those ``k`` rows exactly: bisection on the bits for the k-th largest
   row maximum ``t`` (32 counting passes over the ``m`` maxima), all rows above
   ``t`` plus the first rows equal to ``t``, compacted in ascending order by
   row counts and their prefix sums (never ``jnp.nonzero`` or a long cumsum).
4. Gather the ``k x R`` candidates (ascending original index) and repeat step 3
   on them element-wise: exact k-th key, ties to the lower index, compaction.
5. Sort the ``k`` winners by (key desc, index asc): a one-operand sort of the
   keys and a binary search give each winner the first slot of its group of
   equal keys, rounds of scatter-min the rank inside small groups (a stable
   two-key sort when a group is large); gather the values.

``R`` is a static function of ``(n, k)`` (about ``sqrt(n / k)``, which balances
the two bisections); when ``n / k`` is small the row filter is skipped, and
tiny inputs use ``lax.top_k`` directly. On GPU the counting passes and the
compaction go through the Pallas kernels of :mod:`pallas_gpu` when enabled.

Blockwise top-k runs steps 2-4 inside each block for any per-block k: row
maxima, the per-block k-th largest by a bisection with per-row counts, one
compaction of exactly k entries per block for all blocks, then a small sort
of each block's winners.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from sparsejax.kernels import _common as c
from sparsejax.kernels import pallas_gpu
from sparsejax.kernels import reference

# Below this size lax.top_k on the reference key is as fast as anything else.
SMALL_N = 1 << 14


def row_size(n: int, k: int) -> int:
  """Static row length ``R`` of the max filter for ``k`` of ``n`` (1: none)."""
  ratio = n / k
  if ratio < 16:
    return 1
  r = 2 ** int(round(math.log2(math.sqrt(ratio))))
  return int(min(max(r, 4), 64))


def top_key_indices(key_fn, operands, k: int, n: int,
                    pallas: dict | None = None) -> jax.Array:
  """Indices of the ``k`` largest keys (ties: lower index), sorted.

  The keys are ``key_fn(*operands)`` (element-wise, uint32, real keys >= 1)
  over ``n`` entries; ``operands`` are flat arrays of length ``n``. The key
  function is applied separately to the row view (for the row maxima) and to
  the gathered candidate rows, so XLA fuses it into both instead of writing
  all ``n`` keys out. Padding gets key 0 and is never chosen (``k <= n``).
  ``pallas``: None for the XLA passes, else the keyword arguments of
  :func:`pallas_gpu.top_positions` (``block``, ``interpret``).
  """
  if pallas is None:
    align, select = c.ROW, c.top_positions
  else:
    align = pallas["block"]
    select = functools.partial(pallas_gpu.top_positions, **pallas)
  r = row_size(n, k)
  m = c.round_up(max(-(-n // r), 1), align)
  index = lax.broadcasted_iota(jnp.int32, (m, r), 0) * r
  index = index + lax.broadcasted_iota(jnp.int32, (m, r), 1)

  def keys(idx, rows=None):
    """Keys at ``idx`` = ``index`` (or ``index[rows]``); 0 past the end."""
    if m * r == n:
      args = [a.reshape(m, r) for a in operands]
      args = args if rows is None else [a[rows] for a in args]
    else:  # gather, fused: XLA:CPU would write padded copies out
      args = [a[jnp.minimum(idx, n - 1)] for a in operands]
    key = key_fn(*args)
    return lax.select(idx < n, key, jnp.zeros(key.shape, key.dtype))

  if r == 1:
    flat = keys(index).reshape(-1)
    pos = select(flat, k)
    cand_key, cand_idx = flat[pos], pos
  else:
    row_max = jnp.max(keys(index), axis=1)
    rows = select(row_max, k)                          # ascending
    cand = keys(index[rows], rows).reshape(-1)
    cand = c.pad_to(cand, c.round_up(cand.shape[0], align), 0)
    pos = select(cand, k)
    cand_key = cand[pos]
    cand_idx = rows[pos // r] * r + pos % r
  return c.sort_desc(cand_key, cand_idx.astype(jnp.int32))


@functools.partial(jax.jit, static_argnames=("k",))
def top_k_select(x: jax.Array, k: int):
  """The ``k`` entries of largest ``|x|``: ``(values[k], int32 indices[k])``.

  Same result as :func:`reference.top_k_select_reference` (sorted by
  decreasing magnitude, ties to the lower index, NaN below every number).
  ``k`` is static.
  """
  return top_k_select_impl(x, k)


def top_k_select_impl(x: jax.Array, k: int, small_n: int = SMALL_N,
                      pallas: dict | None | str = "auto"):
  """Unjitted :func:`top_k_select`.

  ``small_n``: sizes up to this use ``lax.top_k``; ``pallas``: ``"auto"``
  (Pallas on GPU), None (XLA) or explicit Pallas settings (tests pass
  ``{"block": 256, "interpret": True}``).
  """
  c.check_vector(x)
  n = x.shape[0]
  k = c.check_int(k, "k", 1, n)
  if n <= small_n:
    return reference.top_k_select_reference(x, k)
  if pallas == "auto":
    pallas = pallas_gpu.default_config()
  idx = top_key_indices(c.magnitude_key, (x,), k, n, pallas)
  return x[idx], idx


def _keep_lowest(word: jax.Array, r: jax.Array) -> jax.Array:
  """Keeps the lowest ``r`` set bits of each uint32 ``word``.

  All of them if ``r`` is at least the popcount, none if ``r <= 0``.
  """
  count = lax.population_count(word).astype(jnp.int32)
  cut = c.select_bit(word, jnp.clip(r, 0, 31)).astype(jnp.uint32)
  low = jnp.where(r >= count, word, word & ((jnp.uint32(1) << cut) - 1))
  return jnp.where(r <= 0, jnp.uint32(0), low)


def _rows_top_positions(key2d: jax.Array, kb: int) -> jax.Array:
  """Per row, the columns (ascending) of its ``kb`` largest keys.

  Ties go to the lower column; ``key2d`` is uint32 ``(rows, w)`` with ``w`` a
  multiple of 32 and ``kb <= w``. The per-row k-th largest key ``t`` comes
  from a bitwise bisection (32 passes counting ``key >= v`` per row, on the
  ``(rows, w / 32, 32)`` view so that every reduction is a short minor-axis
  one); the keys ``> t`` and the first ``kb - count(> t)`` keys ``== t`` of
  each row are packed into bit words and compacted (each row holds exactly
  ``kb`` of them, so one compaction of ``rows * kb`` serves all rows).
  """
  rows, width = key2d.shape
  words = width // c.ROW
  key3d = key2d.reshape(rows, words, c.ROW)

  def body(i, v):
    cand = v | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    count = jnp.sum(jnp.sum(key3d >= cand[:, None, None], axis=2,
                            dtype=jnp.int32), axis=1)
    return jnp.where(count >= kb, cand, v)

  t = lax.fori_loop(0, 32, body, jnp.zeros((rows,), jnp.uint32))[:, None, None]

  def bits(mask3d):
    return c.row_bits(mask3d.reshape(-1, c.ROW)).reshape(rows, words)

  gt, eq = bits(key3d > t), bits(key3d == t)
  need = kb - jnp.sum(lax.population_count(gt).astype(jnp.int32), axis=1)
  eq_count = lax.population_count(eq).astype(jnp.int32)
  eq_before = jnp.cumsum(eq_count, axis=1) - eq_count
  keep = gt | _keep_lowest(eq, need[:, None] - eq_before)
  pos, _, _ = c.compact_bits(keep.reshape(-1), rows * kb)
  return pos.reshape(rows, kb) - width * jnp.arange(rows,
                                                      dtype=jnp.int32)[:, None]


def block_row_size(block_size: int, kb: int) -> int:
  """Row length of the max filter inside blocks: ~``sqrt(block_size / kb)``.

  A power of two dividing ``block_size`` with at least ``kb`` rows per block
  (1: no filter); balances the two bisections as :func:`row_size` does.
  """
  r = 2 ** int(round(math.log2(math.sqrt(block_size / kb))))
  r = min(r, 64)
  while r > 1 and (block_size % r or block_size // r < kb):
    r //= 2
  return r


# Up to this k per block, rows are ordered by pairwise comparisons.
ORDER_BY_COMPARISON_MAX_K = 16


def _order_rows(key2d: jax.Array, col2d: jax.Array) -> jax.Array:
  """``col2d`` reordered per row by decreasing key (ties: increasing column).

  ``col2d`` must be ascending in each row. Small rows rank each entry by
  counting the entries before it (``kb**2`` compares per row, much cheaper
  on CPU than a sort); larger ones take a stable sort.
  """
  kb = key2d.shape[1]
  if kb > ORDER_BY_COMPARISON_MAX_K:
    return lax.sort((~key2d, col2d), dimension=1, num_keys=1,
                    is_stable=True)[1]
  a, b = key2d[:, :, None], key2d[:, None, :]   # entry i, entry j
  j_lt_i = jnp.tril(jnp.ones((kb, kb), bool), -1)[None]  # [., i, j]: j < i
  rank = jnp.sum((b > a) | ((b == a) & j_lt_i), axis=2, dtype=jnp.int32)
  # Slot s holds the entry of rank s.
  hit = rank[:, None, :] == jnp.arange(kb, dtype=jnp.int32)[None, :, None]
  return jnp.sum(jnp.where(hit, col2d[:, None, :], 0), axis=2)


def _pad_columns(key2d: jax.Array) -> jax.Array:
  """Right-pads the rows with key 0 to a multiple of 32 columns."""
  width = key2d.shape[1]
  return jnp.pad(key2d, ((0, 0), (0, c.round_up(width, c.ROW) - width)))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def blockwise_top_k_select(x: jax.Array, k: int, block_size: int):
  """Exact top ``ceil(k / num_blocks)`` of each block of ``block_size``.

  Same layout and result as
  :func:`reference.blockwise_top_k_select_reference`, for any per-block k.
  """
  c.check_vector(x)
  n = x.shape[0]
  block_size = c.check_int(block_size, "block_size", 1)
  k = c.check_int(k, "k", 1, n)
  num_blocks, kb = reference.blockwise_layout(n, k, block_size)
  # Keys: column padding 0 < block padding 1 < NaN 2 < numbers (reference:
  # pad -2 < NaN).
  key = c.pad_to(c.magnitude_key(x) + jnp.uint32(1), num_blocks * block_size,
                 1).reshape(num_blocks, block_size)
  start = block_size * jnp.arange(num_blocks, dtype=jnp.int32)[:, None]
  r = block_row_size(block_size, kb)
  if r > 1:
    # The max filter of top_key_indices inside each block (rows of r never
    # straddle blocks): the kb rows of largest maximum, then their entries.
    row_max = jnp.max(key.reshape(num_blocks, block_size // r, r), axis=2)
    rows = _rows_top_positions(_pad_columns(row_max), kb)
    cand = rows[:, :, None] * r + jnp.arange(r, dtype=jnp.int32)
    cand = start + cand.reshape(num_blocks, kb * r)
    cand_key = jnp.where(
        cand < n, c.magnitude_key(x[jnp.minimum(cand, n - 1)]) + jnp.uint32(1),
        jnp.uint32(1))
    pos = _rows_top_positions(_pad_columns(cand_key), kb)
    local = jnp.take_along_axis(cand, pos, axis=1) - start
    top_key = jnp.take_along_axis(cand_key, pos, axis=1)
  else:
    local = _rows_top_positions(_pad_columns(key), kb)
    top_key = jnp.take_along_axis(key, local, axis=1)
  idx = (_order_rows(top_key, local) + start).reshape(-1)
  idx = jnp.where(idx < n, idx, n).astype(jnp.int32)
  return c.gather_or_zero(x, idx), idx
