"""The communication ledger: exact uplink and downlink bits per client.

Uplink bits are the sizes of the messages the clients really sent
(:func:`sparsejax.message_size`). Downlink is the model broadcast: each
sampled client receives the dense global params, ``sum_leaves n * bits(dtype)``
(sending the aggregated update instead would need every client to hold the
previous global model, which is not true under partial participation).

All counts are :class:`~sparsejax.BitCount` (exact 64-bit); per-client
cumulative counts live in :class:`CommLedger` inside the simulation state, so
they are checkpointed and resumed with it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.compress.accounting import BitCount
from sparsejax.compress.accounting import exact
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import message_size

MAX_SUMMANDS = 2**16  # bitcount_sum is exact for up to this many counts


def broadcast_bits(params: Any) -> BitCount:
  """Bits of sending ``params`` densely, in their own dtypes."""
  return message_size(jax.tree.map(lambda p: DenseMessage(p, p.shape, p.dtype),
                                    params))[1]


def bitcount_sum(counts: BitCount, where=None) -> BitCount:
  """Exact sum of a ``BitCount`` over its leading axis (<= 2**16 entries).

  ``where``: optional bool mask of the entries to include.
  """
  if counts.lo.shape[0] > MAX_SUMMANDS:
    raise ValueError(f"bitcount_sum handles <= {MAX_SUMMANDS} counts")
  if where is not None:
    counts = masked_bits(counts, where)
  lo_low = jnp.sum(counts.lo & np.uint32(0xFFFF), dtype=jnp.uint32)
  lo_high = jnp.sum(counts.lo >> 16, dtype=jnp.uint32)
  hi = jnp.sum(counts.hi, dtype=jnp.uint32)
  # hi * 2**32 + lo_high * 2**16 + lo_low, each part below 2**32.
  return (BitCount(hi + (lo_high >> 16), lo_high << 16)
          + BitCount(jnp.zeros((), jnp.uint32), lo_low))


def masked_bits(counts: BitCount, where) -> BitCount:
  """``counts`` where ``where`` is true, else 0."""
  return _where(where, counts, BitCount(jnp.zeros_like(counts.hi),
                                        jnp.zeros_like(counts.lo)))


def _where(pred, a: BitCount, b: BitCount) -> BitCount:
  return BitCount(jnp.where(pred, a.hi, b.hi), jnp.where(pred, a.lo, b.lo))


class CommLedger(NamedTuple):
  """Cumulative communication of each of the ``N`` clients."""
  uplink: BitCount     # (N,) bits each client sent
  downlink: BitCount   # (N,) bits each client received
  rounds: jax.Array    # (N,) int32: rounds each client took part in

  @classmethod
  def zeros(cls, num_clients: int) -> "CommLedger":
    if num_clients > MAX_SUMMANDS:
      raise ValueError(f"the ledger supports <= {MAX_SUMMANDS} clients")
    z = jnp.zeros((num_clients,), jnp.uint32)
    return cls(BitCount(z, z), BitCount(z, z),
               jnp.zeros((num_clients,), jnp.int32))

  def record(self, clients: jax.Array, valid: jax.Array, uplink: BitCount,
             downlink: BitCount) -> "CommLedger":
    """Adds one round: ``uplink`` (S,) and ``downlink`` (scalar) bits.

    ``clients`` are distinct; entries with ``valid`` false are ignored.
    """
    def add(total: BitCount, bits: BitCount) -> BitCount:
      old = BitCount(total.hi[clients], total.lo[clients])
      new = _where(valid, old + bits, old)
      return BitCount(total.hi.at[clients].set(new.hi, mode="drop"),
                      total.lo.at[clients].set(new.lo, mode="drop"))

    return CommLedger(
        add(self.uplink, uplink), add(self.downlink, downlink),
        self.rounds.at[clients].add(valid.astype(jnp.int32), mode="drop"))

  def totals(self) -> tuple[BitCount, BitCount]:
    """``(uplink, downlink)`` bits summed over all clients."""
    return bitcount_sum(self.uplink), bitcount_sum(self.downlink)


def exact_array(counts: BitCount) -> np.ndarray:
  """A concrete ``BitCount`` array as exact Python ints (object array)."""
  hi, lo = np.asarray(counts.hi), np.asarray(counts.lo)
  return np.vectorize(lambda h, l: exact(BitCount(h, l)), otypes=[object])(hi, lo)
