r"""Server aggregation of client messages.

Two modes over the ``S`` sampled clients with weights ``n_i`` (client sizes)
and decoded messages ``m_i``:

* ``"mean"`` (the theory's, default): :math:`\sum_i n_i m_i / \sum_i n_i`;
* ``"support"`` (the SA-PEF code's): per coordinate ``j``,
  :math:`\sum_i n_i m_{ij} / \sum_{i:\, j \in \mathrm{supp}(m_i)} n_i`, i.e. an
  average only over the clients that sent coordinate ``j`` (0 if none did).
  The support of a sparse message is its index set (a sent zero counts); a
  dense, quantized or sign message supports every coordinate.

Aggregation is split in two so that it runs sharded: :func:`client_sums` on
each device's clients gives an :class:`Aggregate` of weighted sums, which add
up across devices (``jax.lax.psum``), and :func:`finalize` divides.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.compress.messages import decode
from sparsejax.compress.messages import message_support

AGGREGATIONS = ("mean", "support")


def check_aggregation(mode: str) -> None:
  if mode not in AGGREGATIONS:
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")


class Aggregate(NamedTuple):
  """Weighted sums of client messages; add two to merge client groups."""
  weighted_sum: Any  # sum_i n_i m_i, like params
  weight: Any        # sum_i n_i per leaf ("mean") or per coordinate ("support")


def _weighted_sum(weights, stacked):
  def one(x):
    w = weights.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    # where, not w * x: a masked client's NaN must not leak through 0 * NaN.
    return jnp.sum(jnp.where(w > 0, w * x, 0), axis=0)
  return jax.tree.map(one, stacked)


def client_sums(messages: Any, weights: jax.Array, mode: str) -> Aggregate:
  """Weighted sums over a leading client axis of stacked ``messages``.

  Args:
    messages: a message pytree whose arrays have a leading axis of clients.
    weights: ``(C,)`` client weights ``n_i``; 0 masks a client out.
    mode: ``"mean"`` or ``"support"``.
  """
  check_aggregation(mode)
  weighted = _weighted_sum(weights, jax.vmap(decode)(messages))
  if mode == "mean":
    total = jnp.sum(weights)
    weight = jax.tree.map(lambda _: total, weighted)
  else:
    weight = _weighted_sum(weights, jax.vmap(message_support)(messages))
  return Aggregate(weighted, weight)


def finalize(aggregate: Aggregate) -> Any:
  """The aggregated update: weighted sums over weights, 0 where weight is 0."""
  def divide(s, w):
    return jnp.where(w > 0, s / jnp.where(w > 0, w, 1), 0).astype(s.dtype)
  return jax.tree.map(divide, aggregate.weighted_sum, aggregate.weight)
