"""Masked, chunked evaluation: the one loop the engines and the binaries share.

:func:`chunked_mean` averages per-example metrics over the valid examples of a
dataset in fixed-size chunks (one ``lax.map`` step each, so memory is bounded
and shapes are static), optionally over a subset given by example indices and
a validity mask, e.g. a client's padded row of an index table. It is
jit-safe and vmaps over models and index rows (one mean per client).

:func:`as_xy` reads ``(x, y)`` from a ``Dataset`` or a pair. The engines
(:class:`~sparsejax.federated.Simulation`, :class:`~sparsejax.federated.Market`)
and :func:`sparsejax.training.evaluate` all evaluate with these.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Batch = Any
MetricFn = Callable[[Batch], dict[str, jax.Array]]


def as_xy(data, name: str = "data") -> tuple[Any, Any]:
  """``(x, y)`` of a ``Dataset`` (anything with ``x`` and ``y``) or a sequence.

  A sequence gives its first two items (``(x, y)``, ``(x, y, groups)``).

  Raises:
    TypeError: ``data`` is neither; the message names it as ``name``.
  """
  if hasattr(data, "x") and hasattr(data, "y"):
    return data.x, data.y
  if isinstance(data, (tuple, list)) and len(data) >= 2:
    return data[0], data[1]
  raise TypeError(f"{name} must be a Dataset (with x and y) or an (x, y) "
                  f"pair, got {type(data).__name__}")


def chunked_mean(metric_fn: MetricFn, data: Batch, chunk_size: int, *,
                 indices: jax.Array | None = None,
                 mask: jax.Array | None = None) -> dict[str, jax.Array]:
  r"""Means of per-example metrics over the valid examples of ``data``.

  .. math::
     \bar m_k = \sum_{j \in V} m_k(\mathrm{data}[i_j]) / |V|

  over the positions ``j`` of ``indices`` (default: every example, in order)
  where ``mask`` is true (default: all). Positions are cut into
  ``ceil(len / chunk_size)`` chunks of ``chunk_size`` (the last one padded
  with example 0, masked out); the sums use ``where``, so a NaN metric of a
  masked example never leaks into the mean. With no valid example the means
  are NaN (0 / 0).

  Args:
    metric_fn: ``batch -> {name: (B,) per-example values}``, ``batch`` being
      ``data`` indexed by ``B = chunk_size`` example ids (same pytree).
    data: a pytree of arrays with a leading example axis (e.g.
      ``{"x": x, "y": y}``).
    chunk_size: examples per chunk (static).
    indices: ``(M,)`` int example ids to evaluate (e.g. one client's row).
    mask: ``(M,)`` bool, which positions of ``indices`` count.

  Returns:
    ``{name: scalar float32 mean}``.
  """
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  data = jax.tree.map(jnp.asarray, data)
  if indices is None:
    indices = jnp.arange(jax.tree.leaves(data)[0].shape[0], dtype=jnp.int32)
  m = indices.shape[0]
  mask = jnp.ones((m,), bool) if mask is None else mask.astype(bool)
  pad = -(-m // chunk_size) * chunk_size - m
  ids = jnp.pad(indices, (0, pad)).reshape(-1, chunk_size)
  valid = jnp.pad(mask, (0, pad)).reshape(-1, chunk_size)

  def chunk_sums(chunk):
    chunk_ids, chunk_valid = chunk
    metrics = metric_fn(jax.tree.map(lambda a: a[chunk_ids], data))
    return {k: jnp.sum(jnp.where(chunk_valid, v, 0).astype(jnp.float32))
            for k, v in metrics.items()}

  sums = jax.lax.map(chunk_sums, (ids, valid))
  count = jnp.sum(valid, dtype=jnp.float32)
  return {k: jnp.sum(v) / count for k, v in sums.items()}
