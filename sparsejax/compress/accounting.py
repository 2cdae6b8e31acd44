"""Exact communication accounting carried in optax state.

Sizes are kept in :class:`~sparsejax.compress.bitcount.BitCount` (exact
64-bit). Every state type that has statistics to report implements
:class:`ReportsCommStats`; :func:`comm_stats` finds such nodes anywhere in an
optax state and combines them, without knowing their types. Everything here
is jit-safe, except ``comm_stats(..., exact=True)``, which reads the counts on
the host.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.bitcount import exact as exact_count
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
            "last_bits": self.last_bits, "overflow": self.overflow}


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


def _wraps_one_value(node: Any) -> bool:
  """Whether ``node`` is a pytree node around one array at ``.value``.

  flax ``nnx`` wraps every array of an optimizer's state so: the optax state
  of ``nnx.Optimizer`` (``optimizer.opt_state``, or the optimizer itself)
  holds ``OptArray`` and ``OptVariable`` s. Recognised by how the node
  flattens, so the core need not import flax.
  """
  if isinstance(node, (tuple, list, dict)) or reports_comm_stats(node):
    return False
  leaves = jax.tree_util.tree_flatten_with_path(node)[0]
  return (len(leaves) == 1
          and leaves[0][0] == (jax.tree_util.GetAttrKey("value"),))


def _unwrap_values(tree: Any) -> Any:
  """``tree`` with every one-value wrapper (a flax ``nnx`` Variable) replaced
  by the array it holds."""
  return jax.tree.map(
      lambda x: jax.tree.leaves(x)[0] if _wraps_one_value(x) else x, tree,
      is_leaf=_wraps_one_value)


def _not_found_message(state: Any) -> str:
  message = "comm_stats: no sparsejax compressor state found in this state"
  fields = set(CommCounters._fields)
  if _find(state, lambda x: isinstance(x, Mapping) and fields <= set(x)):
    message += (
        "; it holds compressor counters as plain mappings, which have lost "
        "their types (flax's nnx.state(optimizer) does this): pass "
        "optimizer.opt_state, or the nnx.Optimizer itself")
  return message


def _on_host(value: Any) -> Any:
  """A concrete statistic as Python numbers: ints for counts, else floats
  (NumPy arrays of them for array-valued statistics)."""
  if isinstance(value, BitCount):
    return exact_count(value)
  array = np.asarray(value)
  if np.issubdtype(array.dtype, np.integer):
    return int(array) if array.ndim == 0 else array.astype(object)
  return float(array) if array.ndim == 0 else array


def comm_stats(state: Any, exact: bool = False) -> dict[str, Any]:
  """Communication statistics found anywhere in an optax state.

  Combines the statistics of every node of ``state`` that implements
  :class:`ReportsCommStats` (e.g. several compressors under
  ``optax.partition``): each compressor's counters give ``steps`` (the
  largest), ``elements_sent``, ``bits_sent``, ``last_elements``,
  ``last_bits`` and ``overflow`` (summed), and ``bytes_sent`` is
  ``bits_sent / 8``; error feedback adds its total error
  ``sum_t ||a_t - C(a_t)||^2``, ``residual_norm``, ``nonfinite_steps``
  (skipped steps) and ``internal_nonfinite_steps`` (of those, the ones with a
  finite gradient); budgeted compressors add ``budget_left`` (elements or
  bits) and energy ledgers ``energy_joules`` / ``last_energy_joules``.

  ``state`` may also be a flax ``nnx.Optimizer`` or its ``opt_state``, whose
  arrays nnx wraps in Variables; not ``nnx.state(optimizer)``, which turns
  the optax states into plain mappings and is refused with that advice.

  Args:
    state: an optax state (any pytree holding sparsejax states).
    exact: ``False`` (jit-safe): every value is a float32 or int32 array,
      counts included (float32 is exact up to ``2**24``). ``True``: every
      count is an exact Python ``int`` (64-bit :class:`BitCount` counters
      read on the host; a NumPy object array for per-client counts), floats
      are Python floats, ``bytes_sent`` is the exact ``bits_sent / 8``; needs
      concrete values, not under ``jit``.

  Example:
    >>> import jax.numpy as jnp, optax, sparsejax as sj
    >>> tx = optax.chain(sj.error_feedback(sj.top_k(k=1)), optax.sgd(0.1))
    >>> params = {"w": jnp.zeros(4)}
    >>> state = tx.init(params)
    >>> _, state = tx.update({"w": jnp.array([1., -3., 2., 0.])}, state)
    >>> s = sj.comm_stats(state)
    >>> int(s["elements_sent"]), int(s["bits_sent"]), float(s["total_error"])
    (1, 64, 5.0)
    >>> s = sj.comm_stats(state, exact=True)
    >>> s["elements_sent"], s["bits_sent"], s["bytes_sent"], s["steps"]
    (1, 64, 8.0, 1)

  Raises:
    ValueError: if no node of ``state`` reports statistics, two node types
      report one statistic under different rules, or ``exact=True`` under
      ``jit``.
  """
  state = _unwrap_values(state)
  if exact and any(isinstance(leaf, jax.core.Tracer)
                   for leaf in jax.tree.leaves(state)):
    raise ValueError("comm_stats(exact=True) reads the counts on the host: "
                     "call it outside jit, or use exact=False (float32)")
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
    raise ValueError(_not_found_message(state))
  stats = {}
  for name, values in reported.items():
    if rules[name] not in COMBINE:
      raise ValueError(f"comm_stats: unknown rule {rules[name]!r} for "
                       f"{name!r}; choose from {sorted(COMBINE)}")
    if rules[name] != "sum" and isinstance(values[0], BitCount):
      raise ValueError(f"comm_stats: {name!r} is a BitCount, which only "
                       "combines by 'sum'")
    stats[name] = COMBINE[rules[name]](values)
  if exact:
    stats = {name: _on_host(value) for name, value in stats.items()}
  else:
    stats = {name: value.to_float() if isinstance(value, BitCount) else value
             for name, value in stats.items()}
  if "bits_sent" in stats:
    stats["bytes_sent"] = stats["bits_sent"] / 8
  return stats
