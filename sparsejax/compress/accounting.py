"""Exact communication accounting carried in optax state.

Sizes are kept in :class:`~sparsejax.compress.bitcount.BitCount` (exact
64-bit). Everything here is jit-safe.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from sparsejax.compress.bitcount import BitCount

class CommCounters(NamedTuple):
  """Cumulative and last-step message sizes of one compressor."""
  steps: jax.Array            # int32: messages sent
  overflow: jax.Array         # int32: selected entries that did not fit a buffer
  elements: BitCount          # cumulative values sent
  bits: BitCount              # cumulative bits sent
  last_elements: BitCount     # values in the last message
  last_bits: BitCount         # bits of the last message

  @classmethod
  def zero(cls) -> "CommCounters":
    z = BitCount.zero()
    zi = jnp.zeros((), jnp.int32)
    return cls(zi, zi, z, z, z, z)

  def record(self, elements: BitCount, bits: BitCount,
             overflow=0) -> "CommCounters":
    return CommCounters(self.steps + 1, self.overflow + overflow,
                        self.elements + elements, self.bits + bits,
                        elements, bits)


def find_nodes(tree: Any, cls: type) -> list:
  """All nodes of type ``cls`` in ``tree`` (NamedTuples are walked)."""
  return [x for x in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, cls))
          if isinstance(x, cls)]


def comm_stats(state: Any) -> dict[str, jax.Array]:
  """Communication statistics found anywhere in an optax state.

  Sums over every compressor in ``state`` (e.g. several under
  ``optax.partition``) and, where error feedback is present, adds its total
  error ``sum_t ||a_t - C(a_t)||^2``, residual norm and skipped non-finite
  steps; budgeted compressors add ``budget_left`` (elements) and
  cost-weighted ones ``energy_joules`` / ``last_energy_joules``. Bit and element counts are float32 here (jit-safe); the exact
  integers are in the :class:`CommCounters` of the state (:func:`exact`).

  Example:
    >>> import jax.numpy as jnp, optax, sparsejax as sj
    >>> tx = optax.chain(sj.error_feedback(sj.top_k(k=1)), optax.sgd(0.1))
    >>> params = {"w": jnp.zeros(4)}
    >>> state = tx.init(params)
    >>> _, state = tx.update({"w": jnp.array([1., -3., 2., 0.])}, state)
    >>> s = sj.comm_stats(state)
    >>> int(s["elements_sent"]), int(s["bits_sent"]), float(s["total_error"])
    (1, 64, 5.0)
  """
  from sparsejax.feedback import ErrorFeedbackState  # pylint: disable=g-import-not-at-top

  counters = find_nodes(state, CommCounters)
  if not counters:
    raise ValueError("no sparsejax compressor state found in this optax state")
  stats = {
      "steps": jnp.max(jnp.stack([c.steps for c in counters])),
      "elements_sent": BitCount.sum(c.elements for c in counters).to_float(),
      "bits_sent": BitCount.sum(c.bits for c in counters).to_float(),
      "last_elements": BitCount.sum(c.last_elements for c in counters).to_float(),
      "last_bits": BitCount.sum(c.last_bits for c in counters).to_float(),
  }
  stats["bytes_sent"] = stats["bits_sent"] / 8
  stats["overflow"] = sum(c.overflow for c in counters)
  ef = find_nodes(state, ErrorFeedbackState)
  if ef:
    stats["total_error"] = sum(s.total_error for s in ef)
    stats["residual_norm"] = jnp.sqrt(sum(s.residual_sq_norm for s in ef))
    stats["nonfinite_steps"] = sum(s.nonfinite_steps for s in ef)
  budgets = find_nodes(state, BudgetState)
  if budgets:
    stats["budget_left"] = sum(b.left.to_float() for b in budgets)
  energy = find_nodes(state, EnergyLedger)
  if energy:
    stats["energy_joules"] = sum(e.total for e in energy)
    stats["last_energy_joules"] = sum(e.last for e in energy)
  return stats


class BudgetState(NamedTuple):
  """What is left of a total budget (in elements) of a budgeted compressor."""
  left: BitCount


class EnergyLedger(NamedTuple):
  """Energy of the messages sent (joules): cumulative and last message."""
  total: jax.Array
  last: jax.Array

  @classmethod
  def zero(cls) -> "EnergyLedger":
    return cls(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

  def record(self, joules) -> "EnergyLedger":
    return EnergyLedger(self.total + joules, jnp.asarray(joules, jnp.float32))
