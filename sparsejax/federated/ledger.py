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

from sparsejax.compress.bitcount import MAX_SUMMANDS
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import message_size


def broadcast_bits(params: Any) -> BitCount:
  """Bits of sending ``params`` densely, in their own dtypes."""
  return message_size(jax.tree.map(lambda p: DenseMessage(p, p.shape, p.dtype),
                                    params))[1]


class CommLedger(NamedTuple):
  """Cumulative communication of each of the ``N`` clients."""
  uplink: BitCount     # (N,) bits each client sent
  downlink: BitCount   # (N,) bits each client received
  rounds: jax.Array    # (N,) int32: rounds each client took part in

  @classmethod
  def zeros(cls, num_clients: int) -> "CommLedger":
    if num_clients > MAX_SUMMANDS:
      raise ValueError(f"the ledger supports <= {MAX_SUMMANDS} clients")
    return cls(BitCount.zero((num_clients,)), BitCount.zero((num_clients,)),
               jnp.zeros((num_clients,), jnp.int32))

  def record(self, clients: jax.Array, valid: jax.Array, uplink: BitCount,
             downlink: BitCount) -> "CommLedger":
    """Adds one round: ``uplink`` (S,) and ``downlink`` (scalar) bits.

    ``clients`` are distinct; entries with ``valid`` false are ignored.
    """
    def add(total: BitCount, bits: BitCount) -> BitCount:
      old = total.take(clients)
      new = (old + bits).select(valid, old)
      return BitCount(total.hi.at[clients].set(new.hi, mode="drop"),
                      total.lo.at[clients].set(new.lo, mode="drop"))

    return CommLedger(
        add(self.uplink, uplink), add(self.downlink, downlink),
        self.rounds.at[clients].add(valid.astype(jnp.int32), mode="drop"))

  def totals(self) -> tuple[BitCount, BitCount]:
    """``(uplink, downlink)`` bits summed over all clients."""
    return self.uplink.total(), self.downlink.total()
