r"""Mean of compressed messages over a named mesh axis (inside ``shard_map``).

Each of the ``P`` devices on ``axis_name`` holds its own message ``m_p``; every
device receives the same mean

.. math:: \bar m = \frac{1}{P} \sum_p \mathrm{decode}(m_p).

How it crosses the wire, per message type:

* :class:`SparseMessage`: all-gather of the (values, indices) buffers, then one
  scatter-add, when ``capacity / n < 1 / P``; above that crossover a sparse
  all-gather moves more bytes than a dense all-reduce, so the decoded message
  is ``psum``-ed instead (``sparse_crossover=False`` forces the gather).
  Buffers are static-size: threshold messages of varying counts are gathered
  at their capacity, and their bits are counted from the real count.
* full-precision dense messages (``identity``) and threshold messages held
  densely (:class:`MaskedMessage`, whose buffer is the whole tensor, far
  above the crossover): one ``pmean`` all-reduce;
* other messages (quantized, sign, seeded, cast): all-gather of the message
  in its wire dtypes, decoded and averaged on every device.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from sparsejax.compress.base import Compressor
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import FlatMessage
from sparsejax.compress.messages import MaskedMessage
from sparsejax.compress.messages import SparseMessage
from sparsejax.compress.messages import is_message


def _sparse_mean(m: SparseMessage, axis_name, sparse_crossover: bool):
  num = jax.lax.axis_size(axis_name)
  n = math.prod(m.shape)
  capacity = m.values.shape[0]
  if sparse_crossover and capacity * num >= n:
    return jax.lax.psum(m.to_dense(), axis_name) / num
  values = jax.lax.all_gather(m.values, axis_name).reshape(-1)
  indices = jax.lax.all_gather(m.indices, axis_name).reshape(-1)
  flat = jnp.zeros((n,), m.dtype).at[indices].add(
      values.astype(m.dtype), mode="drop")
  return (flat / num).reshape(m.shape)


def _mean(m, axis_name, sparse_crossover):
  if isinstance(m, FlatMessage):
    flat = _mean(m.inner, axis_name, sparse_crossover)
    return m.replace(inner=DenseMessage(flat, flat.shape, flat.dtype)
                     ).to_dense()
  if isinstance(m, SparseMessage):
    return _sparse_mean(m, axis_name, sparse_crossover)
  if isinstance(m, MaskedMessage) or (isinstance(m, DenseMessage)
                                      and m.values.dtype == m.dtype):
    return jax.lax.pmean(m.to_dense(), axis_name)  # a plain all-reduce
  gathered = jax.lax.all_gather(m, axis_name)
  return jnp.mean(jax.vmap(lambda x: x.to_dense())(gathered), axis=0
                  ).astype(m.dtype)


def mean_over_axis(message: Any, axis_name, *, sparse_crossover: bool = True):
  """The mean over ``axis_name`` of the dense updates the messages encode."""
  return jax.tree.map(lambda m: _mean(m, axis_name, sparse_crossover),
                      message, is_leaf=is_message)


def compressed_mean(compressor: Compressor, axis_name, *,
                    sparse_crossover: bool = True) -> Compressor:
  """Wraps a compressor so ``update`` returns the mean over ``axis_name``.

  Call it inside ``shard_map`` (or any context binding ``axis_name``). Each
  device keeps its own state (residual, counters); only messages are
  exchanged. ``encode`` is unchanged, so the wrapper stays a
  :class:`Compressor`.

  Example (``sj.error_feedback(c, axis_name="data")`` is the same as
  ``compressed_mean(sj.error_feedback(c), "data")``)::

    tx = optax.chain(sj.error_feedback(sj.top_k(1e-3), axis_name="data"),
                     optax.sgd(0.1, momentum=0.9))
  """

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    message, state = compressor.encode(updates, state)
    mean = mean_over_axis(message, axis_name, sparse_crossover=sparse_crossover)
    mean = jax.tree.map(lambda x, g: x.astype(g.dtype), mean, updates)
    return mean, state

  return Compressor(compressor.init, compressor.encode, update)
