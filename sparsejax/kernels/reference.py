"""Plain-jnp reference twins of the selection kernels.

These define the semantics every fast kernel in this package must reproduce
exactly (the tests compare them on random and adversarial inputs). They are
simple and slow on purpose: full sorts, no fusion.

Conventions shared by all selection functions:

* Input ``x`` is a flat vector of length ``n`` (any float dtype).
* Outputs are fixed-size buffers: ``values`` (dtype of ``x``) and ``indices``
  (int32). Unused slots hold the sentinel index ``n`` and value ``0``; a
  scatter with ``mode="drop"`` therefore ignores them.
* Magnitude is ``|x|``; ``-0.0`` and ``0.0`` are equal; ``+-inf`` rank highest.
  NaN ranks *below every number* for top-k style selections and is never
  selected by a threshold (``NaN >= t`` is false).
* Ties are broken towards the lower index, so results are deterministic.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _rank_key(x: jax.Array) -> jax.Array:
  """|x| as float32 with NaN mapped below every number (-1)."""
  mag = jnp.abs(x).astype(jnp.float32)
  return jnp.where(jnp.isnan(mag), -1.0, mag)


def top_k_select_reference(x: jax.Array, k: int):
  """The ``k`` entries of largest ``|x|``: ``(values[k], indices[k])``.

  Sorted by decreasing magnitude, ties to the lower index.
  """
  if not 1 <= k <= x.shape[0]:
    raise ValueError(f"k must be in [1, {x.shape[0]}], got {k}")
  _, idx = jax.lax.top_k(_rank_key(x), k)  # stable: lower index first on ties
  idx = idx.astype(jnp.int32)
  return x[idx], idx


def blockwise_layout(n: int, k: int, block_size: int) -> tuple[int, int]:
  """``(num_blocks, k_per_block)`` for blockwise top-k of ``k`` out of ``n``."""
  num_blocks = -(-n // block_size)
  k_per_block = min(block_size, -(-k // num_blocks))
  return num_blocks, k_per_block


def blockwise_top_k_select_reference(x: jax.Array, k: int, block_size: int):
  """Exact top ``ceil(k / num_blocks)`` of each block of ``block_size``.

  The tail block is padded; padded slots can only be chosen when the tail holds
  fewer real entries than ``k_per_block`` and then get the sentinel index.
  Output length is ``num_blocks * k_per_block``, block by block, each block's
  entries sorted by decreasing magnitude.
  """
  n = x.shape[0]
  num_blocks, kb = blockwise_layout(n, k, block_size)
  pad = num_blocks * block_size - n
  key = jnp.pad(_rank_key(x), (0, pad), constant_values=-2.0)
  _, local = jax.lax.top_k(key.reshape(num_blocks, block_size), kb)
  idx = (local + block_size * jnp.arange(num_blocks)[:, None]).reshape(-1)
  idx = jnp.where(idx < n, idx, n).astype(jnp.int32)
  values = jnp.where(idx < n, x[jnp.minimum(idx, n - 1)], 0).astype(x.dtype)
  return values, idx


def _compact(x: jax.Array, mask: jax.Array, order: jax.Array, max_count: int):
  """Entries of ``x`` where ``mask``, visited in ``order``, into a buffer."""
  n = x.shape[0]
  taken = mask[order]
  # Stable partition: selected entries first, in visiting order.
  pos = jnp.argsort(~taken, stable=True)[:max_count]
  idx = jnp.where(taken[pos], order[pos], n).astype(jnp.int32)
  values = jnp.where(idx < n, x[jnp.minimum(idx, n - 1)], 0).astype(x.dtype)
  return values, idx


def threshold_select_reference(x: jax.Array, threshold, max_count: int):
  """All entries with ``|x| >= threshold``, in index order, into ``max_count``.

  Returns ``(values[max_count], indices[max_count], count)`` where ``count`` is
  the true number of qualifying entries; ``count > max_count`` means overflow
  and only the first ``max_count`` (lowest indices) are in the buffer.
  """
  n = x.shape[0]
  mask = jnp.abs(x) >= jnp.asarray(threshold, x.dtype)
  values, idx = _compact(x, mask, jnp.arange(n), min(max_count, n) if n else 0)
  if max_count > n:
    pad = max_count - n
    values = jnp.pad(values, (0, pad))
    idx = jnp.pad(idx, (0, pad), constant_values=n)
  return values, idx, jnp.sum(mask, dtype=jnp.int32)


def cost_weighted_select_reference(x: jax.Array, cost: jax.Array, budget,
                                   power: float = 1.0,
                                   max_count: int | None = None,
                                   per_cost: bool = True):
  """Greedy knapsack of CWMP by a full sort.

  Entries are visited in decreasing ``score = |x|**power / cost`` (ties to the
  lower index); the selection is the longest prefix whose cumulative cost is
  ``<= budget``. Returns ``(values, indices, count, spent)`` with the buffer
  in visiting order; ``spent`` is the total cost of the selection.
  ``per_cost=False`` visits by ``|x|**power`` alone (a top-k by magnitude
  that stops when the cost runs out).
  """
  n = x.shape[0]
  max_count = n if max_count is None else max_count
  cost = jnp.broadcast_to(jnp.asarray(cost, jnp.float32), (n,))
  score = _rank_key(x) ** power / (cost if per_cost else 1.0)
  score = jnp.where(jnp.isnan(x), -1.0, score)
  order = jnp.argsort(-score, stable=True)
  fits = jnp.cumsum(cost[order]) <= jnp.asarray(budget, jnp.float32)
  mask = jnp.zeros((n,), bool).at[order].set(fits)
  count = jnp.sum(fits, dtype=jnp.int32)
  spent = jnp.sum(jnp.where(mask, cost, 0.0))
  values, idx = _compact(x, mask, order.astype(jnp.int32), min(max_count, n))
  if max_count > n:
    values = jnp.pad(values, (0, max_count - n))
    idx = jnp.pad(idx, (0, max_count - n), constant_values=n)
  return values, idx, count, spent


def k_from_ratio(n: int, ratio: float) -> int:
  """``max(1, floor(ratio * n))``, the number of entries kept for ``ratio``."""
  return max(1, int(math.floor(ratio * n)))
