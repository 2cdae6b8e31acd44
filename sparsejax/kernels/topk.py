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
Blockwise top-k extracts the per-block maxima one at a time for small
per-block k (row reductions only) and uses batched ``lax.top_k`` otherwise.
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
# Per-block k up to which blockwise selection extracts maxima one by one.
BLOCKWISE_EXTRACT_MAX_K = 8


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
  parts = [c.pad_to(a, m * r, 0).reshape(m, r) for a in operands]

  def keys(idx, *args):
    return jnp.where(idx < n, key_fn(*args), jnp.uint32(0))

  if r == 1:
    flat = keys(index, *parts).reshape(-1)
    pos = select(flat, k)
    cand_key, cand_idx = flat[pos], pos
  else:
    row_max = jnp.max(keys(index, *parts), axis=1)
    rows = select(row_max, k)                          # ascending
    cand = keys(index[rows], *(p[rows] for p in parts)).reshape(-1)
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


def _extract_block_maxima(key_fn, shape, kb: int) -> jax.Array:
  """Per-row positions of the ``kb`` largest keys, one argmax at a time.

  ``key_fn()`` builds the ``(rows, B)`` key array; it is called afresh for
  each reduction so that XLA fuses it into the reduction instead of writing
  the keys out (writing an n-sized array costs more than the reductions).
  Rows longer than 32 are viewed as ``(rows, B / 32, 32)`` so every
  reduction is a short minor-axis one (vectorised on CPU).
  """
  rows, width = shape
  split = width % c.ROW == 0 and width > c.ROW
  view = (rows, width // c.ROW, c.ROW) if split else shape

  def col():
    out = lax.broadcasted_iota(jnp.int32, view, len(view) - 1)
    if split:
      out = out + c.ROW * lax.broadcasted_iota(jnp.int32, view, 1)
    return out

  def reduce(fn, a):
    a = fn(a, axis=-1)
    return fn(a, axis=-1) if split else a

  def expand(v):
    return v[:, None, None] if split else v[:, None]

  out = []
  for _ in range(kb):
    def keys(taken, flip):
      # Two spellings of the same masking, so that XLA does not merge the
      # two passes' key computations into one array that it writes out.
      key = key_fn().reshape(view)
      for pos in taken:
        if flip:
          key = jnp.where(col() != expand(pos), key, jnp.uint32(0))
        else:
          key = jnp.where(col() == expand(pos), jnp.uint32(0), key)
      return key
    best = reduce(jnp.max, keys(out, False))
    out.append(reduce(jnp.min, jnp.where(keys(out, True) == expand(best),
                                         col(), width)))
  return jnp.stack(out, axis=1)


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def blockwise_top_k_select(x: jax.Array, k: int, block_size: int):
  """Exact top ``ceil(k / num_blocks)`` of each block of ``block_size``.

  Same layout and result as
  :func:`reference.blockwise_top_k_select_reference`.
  """
  c.check_vector(x)
  n = x.shape[0]
  block_size = c.check_int(block_size, "block_size", 1)
  k = c.check_int(k, "k", 1, n)
  num_blocks, kb = reference.blockwise_layout(n, k, block_size)
  if kb > BLOCKWISE_EXTRACT_MAX_K:
    return reference.blockwise_top_k_select_reference(x, k, block_size)
  # Keys: removed 0 < padding 1 < NaN 2 < numbers (reference: pad -2 < NaN).
  shape = (num_blocks, block_size)

  def key_fn():
    key = c.magnitude_key(x) + jnp.uint32(1)
    return c.pad_to(key, num_blocks * block_size, 1).reshape(shape)

  local = _extract_block_maxima(key_fn, shape, kb)
  idx = (local + block_size * jnp.arange(num_blocks, dtype=jnp.int32)[:, None])
  idx = idx.reshape(-1)
  idx = jnp.where(idx < n, idx, n).astype(jnp.int32)
  return c.gather_or_zero(x, idx), idx
