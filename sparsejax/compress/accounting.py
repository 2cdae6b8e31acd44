"""Exact communication accounting carried in optax state.

Sizes are kept in :class:`~sparsejax.compress.bitcount.BitCount` (exact
64-bit). Every state type that has statistics to report implements
:class:`ReportsCommStats`; :func:`comm_stats` finds such nodes anywhere in an
optax state and combines them, without knowing their types. Everything here
is jit-safe.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.messages import message_overflow
from sparsejax.compress.messages import message_size


def _sum(values):
  if isinstance(values[0], BitCount):
    return BitCount.sum(values)
  return functools.reduce(operator.add, values)


def _root_sum_squares(values):
  return jnp.sqrt(functools.reduce(operator.add,
                                   [jnp.square(v) for v in values]))


#: How the values of one statistic reported by several state nodes combine.
COMBINE: Mapping[str, Callable[[list], Any]] = {
    "sum": _sum,
    "max": lambda values: functools.reduce(jnp.maximum, values),
    "norm": _root_sum_squares,  # the values are norms of disjoint parts
}


class ReportsCommStats(Protocol):
  """A state node that contributes to :func:`comm_stats`.

  ``comm_stats()`` returns ``{name: value}`` with arrays, or
  :class:`BitCount` for exact counts (reported as float32).
  ``comm_stats_combine`` maps a name to its rule in :data:`COMBINE`, how the
  values of several nodes combine: ``"sum"`` (the default for names not
  listed), ``"max"`` or ``"norm"`` (root of the sum of squares). Only
  ``"sum"`` accepts a ``BitCount``.
  """
  comm_stats_combine: ClassVar[Mapping[str, str]]

  def comm_stats(self) -> dict[str, Any]:
    ...


def reports_comm_stats(node) -> bool:
  """Whether ``node`` implements :class:`ReportsCommStats`."""
  return callable(getattr(node, "comm_stats", None))


class CommCounters(NamedTuple):
  """Cumulative and last-step message sizes of one compressor.

  Sizes and overflow are exact 64-bit :class:`BitCount` s; ``steps`` is an
  int32, exact up to ``2**31 - 1`` messages, where it saturates (at 1000
  steps a second, 24 days).
  """
  steps: jax.Array            # int32: messages sent
  overflow: BitCount          # selected entries that did not fit a buffer
  elements: BitCount          # cumulative values sent
  bits: BitCount              # cumulative bits sent
  last_elements: BitCount     # values in the last message
  last_bits: BitCount         # bits of the last message

  comm_stats_combine = {"steps": "max"}

  @classmethod
  def zero(cls) -> "CommCounters":
    z = BitCount.zero()
    return cls(jnp.zeros((), jnp.int32), z, z, z, z, z)

  def record(self, message: Any,
             overflow: BitCount | None = None) -> "CommCounters":
    """The counters after sending ``message`` (a message pytree).

    ``overflow``: entries left out of it; by default those its buffers did
    not hold (:func:`~sparsejax.compress.messages.message_overflow`).
    """
    elements, bits = message_size(message)
    if overflow is None:
      overflow = message_overflow(message)
    return CommCounters(optax.safe_increment(self.steps),
                        self.overflow + overflow,
                        self.elements + elements, self.bits + bits,
                        elements, bits)

  def comm_stats(self) -> dict[str, Any]:
    return {"steps": self.steps, "elements_sent": self.elements,
            "bits_sent": self.bits, "last_elements": self.last_elements,
            "last_bits": self.last_bits,
            "bytes_sent": self.bits.to_float() / 8,
            "overflow": self.overflow}


def find_nodes(tree: Any, cls: type) -> list:
  """All nodes of type ``cls`` in ``tree``, outer before inner."""
  return _find(tree, lambda x: isinstance(x, cls))


def _find(tree: Any, match: Callable[[Any], bool]) -> list:
  found = [tree] if match(tree) else []
  for node in jax.tree.leaves(tree, is_leaf=lambda x: x is not tree
                              and match(x)):
    if match(node):
      found.extend(_find(node, match))
  return found


def comm_stats(state: Any) -> dict[str, jax.Array]:
  """Communication statistics found anywhere in an optax state.

  Combines the statistics of every node of ``state`` that implements
  :class:`ReportsCommStats` (e.g. several compressors under
  ``optax.partition``): each compressor's counters give ``steps`` (the
  largest), ``elements_sent``, ``bits_sent``, ``bytes_sent``,
  ``last_elements``, ``last_bits`` and ``overflow`` (summed); error feedback
  adds its total error ``sum_t ||a_t - C(a_t)||^2``, ``residual_norm``,
  ``nonfinite_steps`` (skipped steps) and ``internal_nonfinite_steps`` (of
  those, the ones with a finite gradient); budgeted compressors add
  ``budget_left`` (elements) and energy ledgers ``energy_joules`` /
  ``last_energy_joules``. Counts are float32 here (jit-safe); the exact
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

  Raises:
    ValueError: if no node of ``state`` reports statistics, or two node types
      report one statistic under different rules.
  """
  reported, rules = {}, {}
  for node in _find(state, reports_comm_stats):
    node_rules = getattr(type(node), "comm_stats_combine", {})
    for name, value in node.comm_stats().items():
      rule = node_rules.get(name, "sum")
      if rules.setdefault(name, rule) != rule:
        raise ValueError(f"comm_stats: {type(node).__name__} combines "
                         f"{name!r} by {rule!r}, another state by "
                         f"{rules[name]!r}; use one rule per name")
      reported.setdefault(name, []).append(value)
  if not reported:
    raise ValueError("no sparsejax compressor state found in this optax state")
  stats = {}
  for name, values in reported.items():
    if rules[name] not in COMBINE:
      raise ValueError(f"comm_stats: unknown rule {rules[name]!r} for "
                       f"{name!r}; choose from {sorted(COMBINE)}")
    if rules[name] != "sum" and isinstance(values[0], BitCount):
      raise ValueError(f"comm_stats: {name!r} is a BitCount, which only "
                       "combines by 'sum'")
    value = COMBINE[rules[name]](values)
    stats[name] = value.to_float() if isinstance(value, BitCount) else value
  return stats
