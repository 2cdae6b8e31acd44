"""The communication ledger: exact uplink and downlink bits per client.

In the :class:`~sparsejax.federated.Simulation`, uplink bits are what each
client's uplink compressor counted for the message it sent (its
:class:`~sparsejax.compress.CommCounters`). Downlink is the size of the
algorithm's broadcast, for each sampled client: by default the dense global
params, ``sum_leaves n * bits(dtype)``; SCAFFOLD's adds its control variate;
with ``downlink=C`` it is the compressed message ``C(x_t - x_hat_{t-1})``,
which assumes that every client receives every broadcast
(:func:`~sparsejax.federated.algorithms.compressed_downlink`). The
:class:`~sparsejax.federated.Market` records its dense logits and targets.

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
from sparsejax.compress.bitcount import exact
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import message_size


def dense_bits(tree: Any) -> BitCount:
  """Bits of sending the arrays of ``tree`` densely, in their own dtypes."""
  return message_size(jax.tree.map(lambda p: DenseMessage(p, p.shape, p.dtype),
                                    tree))[1]


def traffic_metrics(uplink: BitCount, downlink: BitCount) -> dict[str, Any]:
  """Exact ``uplink_bits``/``downlink_bits`` (ints) of two concrete totals,
  with ``uplink_bytes``, ``downlink_bytes`` and ``total_bytes`` (floats)."""
  up, down = exact(uplink), exact(downlink)
  return {"uplink_bits": up, "downlink_bits": down, "uplink_bytes": up / 8,
          "downlink_bytes": down / 8, "total_bytes": (up + down) / 8}


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
    """Adds one round: ``uplink`` and ``downlink`` bits, ``(S,)`` or scalar.

    ``clients`` are distinct (an id ``>= N`` is dropped); entries with
    ``valid`` false are ignored.
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
