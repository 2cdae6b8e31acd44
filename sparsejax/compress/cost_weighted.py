r"""Cost-weighted magnitude pruning (CWMP) under an energy budget.

Each element ``i`` of the flattened update has a cost ``c_i > 0`` (energy to
transmit and apply it). CWMP keeps the greedy knapsack

.. math:: S = \text{longest prefix of } \mathrm{argsort}_\downarrow
   \frac{|x_i|^p}{c_i} \text{ with } \sum_{i \in S} c_i \le B

and the energy of every message, the costs of the entries actually sent, is
recorded in an :class:`EnergyLedger` (``comm_stats(state)["energy_joules"]``).
With equal costs it selects exactly what top-k selects. ``rank="magnitude"``
visits by ``|x_i|`` alone under the same budget: the energy-matched top-k
baseline (the largest entries while their cumulative cost fits ``B``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax import kernels
from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.accounting import find_nodes
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_compressor
from sparsejax.compress.base import check_float_dtype
from sparsejax.compress.base import check_number
from sparsejax.compress.base import check_ratio
from sparsejax.compress.base import flatten_floats
from sparsejax.compress.base import is_float
from sparsejax.compress.base import sent_whole
from sparsejax.compress.base import whole
from sparsejax.compress.costs import COST_MODELS
from sparsejax.compress.costs import resolve_costs
from sparsejax.compress.messages import SparseMessage
from sparsejax.compress.messages import message_support


#: Visiting orders of :func:`cost_weighted`'s greedy prefix.
RANKS = ("value_per_cost", "magnitude")


class EnergyLedger(NamedTuple):
  """Energy of the messages sent (joules): cumulative and last message."""
  total: jax.Array
  last: jax.Array

  @classmethod
  def zero(cls) -> "EnergyLedger":
    return cls(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

  def record(self, joules) -> "EnergyLedger":
    return EnergyLedger(self.total + joules, jnp.asarray(joules, jnp.float32))

  def comm_stats(self) -> dict[str, jax.Array]:
    return {"energy_joules": self.total, "last_energy_joules": self.last}


class CostWeightedState(NamedTuple):
  """Message counters and the energy ledger."""
  counters: CommCounters
  energy: EnergyLedger


def cost_weighted(costs="uniform", *, budget: float | None = None,
                  energy_ratio: float | None = None, power: float = 1.0,
                  max_ratio: float | None = None, value_dtype=None,
                  rank: str = "value_per_cost") -> Compressor:
  """CWMP: the updates worth most per unit of cost, within a budget per step.

  Args:
    costs: a pytree like the params of positive per-element costs (scalar
      per leaf or leaf-shaped arrays), a cost model ``params -> costs``, or
      a preset name: ``"uniform"``, ``"by_layer_kind"``, ``"energy_table"``
      (see :mod:`sparsejax.compress.costs`).
    budget: cost allowed per message (e.g. joules per round).
    energy_ratio: instead of ``budget``, a fraction of the cost of sending
      everything (``budget = energy_ratio * sum_i c_i``).
    power: ``p`` in the score ``|x|**p / c`` (1 as in the paper; 2 is the
      squared-norm-optimal variant).
    max_ratio: static buffer size as a fraction of the update (default:
      all of it); selections that do not fit are not sent (they stay in the
      error-feedback residual, cost no energy) and are counted as overflow.
    value_dtype: wire dtype of the values.
    rank: the visiting order of the greedy prefix: ``"value_per_cost"``
      (CWMP, ``|x|**p / c``) or ``"magnitude"`` (``|x|``: a top-k whose
      ``k`` is whatever the budget pays for, the baseline to compare CWMP
      with at equal energy; ``power`` must stay 1, it could not change the
      order).

  Static under ``optax.inject_hyperparams``: ``costs``, ``power``,
  ``max_ratio``, ``value_dtype``, ``rank``.

  Example:
    >>> import jax.numpy as jnp, sparsejax as sj
    >>> tx = sj.cost_weighted({"a": 1.0, "b": 4.0}, budget=2.0)
    >>> g = {"a": jnp.array([1., 3.]), "b": jnp.array([5., 0.])}
    >>> out, state = tx.update(g, tx.init(g))
    >>> out["a"].tolist(), out["b"].tolist(), float(state.energy.total)
    ([0.0, 3.0], [0.0, 0.0], 1.0)

    Scores are 3 (a[1]), 1.25 (b[0]), 1 (a[0]): b[0] would exceed the
    budget, so the greedy prefix stops after a[1].

  References:
    Athanasakos, "A Theoretical Framework for Energy-Aware Gradient Pruning
    in Federated Learning", 2026.
  """
  if (budget is None) == (energy_ratio is None):
    raise ValueError("give exactly one of budget and energy_ratio")
  if budget is not None:
    check_number(budget, "budget", 0)
  else:
    check_ratio(energy_ratio, "energy_ratio")
  if max_ratio is not None:
    check_ratio(max_ratio, "max_ratio", static=True)
  check_number(power, "power", 0, low_open=True, static=True)
  if rank not in RANKS:
    raise ValueError(f"rank must be one of {RANKS}, got {rank!r}")
  if rank == "magnitude" and power != 1:
    raise ValueError(f"power={power!r} has no effect with rank='magnitude' "
                     "(|x|**p orders entries as |x| does); leave it at 1")
  check_float_dtype(value_dtype, "value_dtype")
  _check_costs(costs)

  def init(params):
    resolve_costs(costs, params)  # fail early on a bad costs tree
    return CostWeightedState(CommCounters.zero(), EnergyLedger.zero())

  def encode(updates, state):
    leaves, treedef = jax.tree.flatten(updates)
    x, pack = flatten_floats(leaves, treedef)
    if sent_whole(x):  # no float entry: nothing to select, no energy
      message = pack(whole(x))
      return message, CostWeightedState(state.counters.record(message),
                                        state.energy.record(0.0))
    c = jnp.concatenate([
        x.reshape(-1) for x, u in zip(_leaf_costs(costs, updates), leaves)
        if is_float(u)])
    step_budget = budget if budget is not None else energy_ratio * jnp.sum(c)
    n = x.shape[0]
    max_count = n if max_ratio is None else math.ceil(max_ratio * n)
    values, indices, count, _ = kernels.cost_weighted_select(
        x, c, step_budget, power=power, max_count=max_count,
        per_cost=rank == "value_per_cost")
    wire = x.dtype if value_dtype is None else value_dtype
    message = pack(SparseMessage(values.astype(wire), indices, count,
                                 x.shape, x.dtype, "int32", True))
    # The energy of what is sent: the buffer (unused slots hold index n).
    sent = jnp.sum(c.at[indices].get(mode="fill", fill_value=0.0))
    return message, CostWeightedState(
        state.counters.record(message),  # overflow: count > buffer
        state.energy.record(sent))

  return Compressor(init, encode)


cost_weighted.static_args = ("costs", "power", "max_ratio", "value_dtype",
                             "rank")


def _check_costs(costs) -> None:
  """Refuses an unknown preset name at construction (trees: at ``init``)."""
  if isinstance(costs, str) and costs not in COST_MODELS:
    raise ValueError(f"costs: unknown cost model {costs!r}; choose from "
                     f"{sorted(COST_MODELS)}, or pass a cost pytree or a "
                     "function params -> costs")


def _leaf_costs(costs, updates) -> list:
  """Per-element costs broadcast to each leaf's shape, in leaf order."""
  return [jnp.broadcast_to(c, u.shape) for c, u in zip(
      jax.tree.leaves(resolve_costs(costs, updates)), jax.tree.leaves(updates))]


class MeteredState(NamedTuple):
  """The wrapped compressor's state and the energy ledger."""
  inner_state: Any
  energy: EnergyLedger


def energy_metered(compressor: Compressor, costs="energy_table") -> Compressor:
  """Records the energy ``sum_{i sent} c_i`` of any compressor's messages.

  The ledger sits in state beside the wrapped compressor's, so
  ``comm_stats`` reports ``energy_joules`` for top-k or any other
  compressor, to compare with :func:`cost_weighted` on the same costs.

  >>> import jax.numpy as jnp, sparsejax as sj
  >>> tx = sj.energy_metered(sj.top_k(k=1, scope="global"), {"a": 2.0, "b": 5.0})
  >>> g = {"a": jnp.array([1., 3.]), "b": jnp.array([0.5, 0.])}
  >>> _, state = tx.update(g, tx.init(g))
  >>> float(sj.comm_stats(state)["energy_joules"])
  2.0
  """
  check_compressor(compressor)
  _check_costs(costs)

  def init(params):
    resolve_costs(costs, params)
    inner_state = compressor.init(params)
    if find_nodes(inner_state, EnergyLedger):
      raise ValueError("this compressor already keeps an energy ledger "
                       "(e.g. cost_weighted): metering it again would count "
                       "its energy twice")
    return MeteredState(inner_state, EnergyLedger.zero())

  def encode(updates, state):
    message, inner_state = compressor.encode(updates, state.inner_state)
    sent = jax.tree.leaves(message_support(message))
    joules = sum(jnp.sum(c * s) for c, s, u in zip(
        _leaf_costs(costs, updates), sent, jax.tree.leaves(updates))
                 if is_float(u))
    return message, MeteredState(inner_state, state.energy.record(joules))

  return Compressor(init, encode)


energy_metered.static_args = ("costs",)
