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
* full-precision dense messages (``no_compression``) and threshold messages
  held densely (:class:`MaskedMessage`, whose buffer is the whole tensor, far
  above the crossover): one ``pmean`` all-reduce;
* other messages (quantized, sign, seeded, cast, gated): all-gather of the
  message in its wire dtypes, decoded and averaged on every device;
* a :class:`FlatMessage` (``scope="global"``) as its inner message;
* messages whose devices already exchanged values while encoding
  (:meth:`~sparsejax.compress.Message.exchanged_over`): PowerSGD's
  :class:`LowRankMessage` (``encode`` all-reduces ``P`` and ``Q``, two
  ``pmean`` s of ``(n + m) * r`` floats) and the majority vote's
  :class:`VoteMessage` (one ``psum`` of int8 signs) hold what they received,
  so their mean is local. Their compressors take the axis themselves:
  ``sj.error_feedback(sj.powersgd(axis_name="data"), axis_name="data")``.

Each message type implements its collective
(:meth:`sparsejax.compress.Message.mean`);
:func:`sparsejax.compress.mean_over_axis` applies them to a pytree of
messages.
"""

from __future__ import annotations

import functools

from sparsejax.compress.base import Compressor
from sparsejax.compress.base import decoding_update
from sparsejax.compress.messages import mean_over_axis


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
  mean = functools.partial(mean_over_axis, axis_name=axis_name,
                           sparse_crossover=sparse_crossover)
  return Compressor(compressor.init, compressor.encode,
                    decoding_update(compressor.encode, mean))
