r"""Mean of compressed messages over a named mesh axis (inside ``shard_map``).

Each of the ``P`` devices on ``axis_name`` holds its own message ``m_p``; every
device receives the same mean

.. math:: \bar m = \frac{1}{P} \sum_p \mathrm{decode}(m_p).

How it crosses the wire, per message type. Except on the dense paths above
a sparse crossover (which move ``n`` values, as an all-reduce), the bytes
each device contributes equal the message's counted bits plus the padding
noted (``tests/parallel/test_wire_bytes.py`` checks it in the lowered HLO):

* bit-level messages travel packed (:mod:`sparsejax.compress.packing`,
  ``uint32`` words, under 32 bits of padding per packed array), all-gathered
  with their scalars, unpacked and decoded on every device, giving the same
  values as the unpacked arrays: :class:`SignMessage` (1 bit per entry and
  the scale), :class:`TwoValueMessage` (1 bit and two values),
  :class:`QuantizedMessage` (QSGD, TernGrad: ``ceil(log2(levels + 1)) + 1``
  bits of sign and magnitude, and the norm), :class:`PowerOfTwoMessage`
  (9 bits: sign and exponent);
* :class:`SparseMessage`: all-gather of the (values, indices) buffers, or of
  the values in index order and an ``n``-bit bitmap (index encoding
  ``"bitmap"``, or ``"auto"`` with a capacity above ``n / 32``), plus the
  count of a variable-size message, then one scatter-add, when
  ``capacity / n < 1 / P``; above that crossover a sparse all-gather moves
  more bytes than a dense all-reduce, so the decoded message is ``psum``-ed
  instead (``sparse_crossover=False`` forces the gather). Buffers are
  static-size: a threshold message moves its whole capacity, ``capacity -
  count`` unused slots beyond its counted bits;
* :class:`MaskedMessage` (a threshold without capacity, held densely): an
  all-gather of the counts (its 32-bit header), then, for the largest count
  ``c`` on the axis, a gather at the smallest static capacity of
  :func:`~sparsejax.compress.messages.wire_capacities` holding ``c`` (the
  largest below the crossover, halved down to 1: at most about ``2 c``
  slots) or, when none holds ``c``, one ``pmean`` of the dense tensor
  (fewer bytes above the crossover). Nothing is ever truncated;
* full-precision dense messages (``no_compression``): one ``pmean``
  all-reduce; other messages (seeded, cast, gated): all-gather of the
  message's arrays in their wire dtypes (a gated message moves its buffers
  also when not sent);
* a :class:`FlatMessage` (``scope="global"``) as its inner message;
* messages whose devices already exchanged values while encoding
  (:meth:`~sparsejax.compress.Message.exchanged_over`): PowerSGD's
  :class:`LowRankMessage` (``encode`` all-reduces ``P`` and ``Q``, two
  ``pmean`` s of ``(n + m) * r`` floats) and the majority vote's
  :class:`VoteMessage` (one all-gather of the signs packed 32 to a word
  and of an 8-bit non-finite flag, summed on every device: at ``P = 8``
  a ring all-gather sends ``7n/8`` bytes per device, an int8 all-reduce
  ``7n/4``) hold what they received, so their mean is local. Their
  compressors take the axis themselves:
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
