r"""Hard threshold under a total communication budget (Sahu et al., adaptive).

Given a budget of ``B`` elements (or bits) over ``T`` steps, one threshold
``lambda_t`` for the whole flattened update is adapted slowly so that each
step spends about an even share of what is left, ``g_t = L_{t-1} / (T - t +
1)`` (so early overspending is paid back by later steps, and underspending
lowers the threshold before the run ends):

.. math::
   n_t = \min\big(|\{i : |a_i| \ge \lambda_t\}|,\; \mathrm{cap},\;
         L_{t-1} - r (T - t)\big), \qquad
   \lambda_{t+1} = \lambda_t \exp\big(\eta \,\mathrm{clip}(n_t / g_t - 1,
   -1, 1)\big)

where ``L`` is the budget left and ``r = reserve * B / T`` elements are
held back for every later step, so the last steps are never starved and the
total never exceeds ``B`` (the ``n_t`` largest entries above the threshold
are sent; the rest stay in the error-feedback residual and are counted as
``overflow``). The last planned step ``T`` ignores the threshold and sends
the largest entries the budget left allows (up to the buffer), so the run
ends on budget. ``lambda_0`` is the magnitude of the ``B/T``-th largest entry
of the first update unless given. ``cap = ceil(capacity_factor * B / T)``
bounds one message. When everything above the threshold fits (the usual
case) the step costs one comparison pass; only a step over its allowance
runs a top-``cap`` selection (``lax.cond``). The message is a
:class:`~sparsejax.compress.messages.MaskedMessage`. Beyond ``T`` steps, only
what is left is spent.

The public route is ``hard_threshold(budget=B, num_steps=T, ...)``
(:func:`sparsejax.hard_threshold`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from sparsejax import kernels
from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_at_least
from sparsejax.compress.base import flatten_floats
from sparsejax.compress.messages import MaskedMessage
from sparsejax.compress.messages import dtype_bits

BUDGET_UNITS = ("elements", "bits")


class BudgetState(NamedTuple):
  """What is left of a total budget (in elements) of a budgeted compressor."""
  left: BitCount

  def comm_stats(self) -> dict[str, BitCount]:
    return {"budget_left": self.left}


class BudgetedThresholdState(NamedTuple):
  """Counters, budget left, the current threshold and the step."""
  counters: CommCounters
  budget: BudgetState
  threshold: jax.Array  # float32 lambda_t
  step: jax.Array       # int32


def budget_in_elements(budget: float, num_steps: int, unit: str,
                       value_bits: int) -> int:
  """Elements a budget buys: bits pay ``value_bits + 32`` per element and a
  32-bit header per message."""
  if unit == "elements":
    return int(budget)
  return int((budget - 32 * num_steps) // (value_bits + 32))


def budgeted_hard_threshold(budget: float, num_steps: int, *,
                            unit: str = "elements",
                            initial_threshold: float | None = None,
                            adapt_rate: float = 0.1, reserve: float = 0.5,
                            capacity_factor: float = 8.0,
                            value_dtype=None) -> Compressor:
  """The compressor of ``hard_threshold(budget=..., num_steps=...)``.

  Arguments as documented there (:func:`sparsejax.hard_threshold`).
  """
  check_at_least(budget, 1, "budget")
  check_at_least(num_steps, 1, "num_steps")
  check_at_least(reserve, 0, "reserve")
  check_at_least(capacity_factor, 1, "capacity_factor")
  if reserve >= 1:
    raise ValueError(f"reserve must be < 1, got {reserve}")
  if unit not in BUDGET_UNITS:
    raise ValueError(f"unit must be one of {BUDGET_UNITS}, got {unit!r}")

  def total_elements(dtype) -> int:
    wire = dtype if value_dtype is None else value_dtype
    total = budget_in_elements(budget, num_steps, unit, dtype_bits(wire))
    if total < 1:
      raise ValueError(f"budget {budget} {unit} buys no element")
    return total

  def init(params):
    floats = [p for p in jax.tree.leaves(params)
              if jnp.issubdtype(p.dtype, jnp.floating)]
    total = total_elements(jnp.result_type(*floats))
    lam = 0.0 if initial_threshold is None else initial_threshold
    return BudgetedThresholdState(
        CommCounters.zero(), BudgetState(BitCount.of(0, 1, total)),
        jnp.asarray(lam, jnp.float32), jnp.zeros((), jnp.int32))

  def encode(updates, state):
    leaves, treedef = jax.tree.flatten(updates)
    x, pack = flatten_floats(leaves, treedef)
    n = x.shape[0]
    total = total_elements(x.dtype)
    per_step = total / num_steps
    capacity = min(n, math.ceil(capacity_factor * per_step))
    magnitude = jnp.abs(x).astype(jnp.float32)
    lam = state.threshold
    if initial_threshold is None:  # the (B/T)-th largest magnitude
      first = min(n, max(1, round(per_step)))
      lam = lax.cond(state.step == 0,
                     lambda: jnp.abs(kernels.top_k_select(x, first)[0][-1]
                                     ).astype(jnp.float32),
                     lambda: lam)
    keep = magnitude >= lam
    above = jnp.sum(keep, dtype=jnp.int32)
    later_steps = jnp.maximum(num_steps - 1 - state.step, 0)
    held_back = later_steps * np.int32(math.floor(reserve * per_step))
    allowed = jnp.clip(state.budget.left.clip_to_int32() - held_back,
                       0, capacity)

    def largest_allowed():  # the `allowed` largest entries, largest first
      values, indices = kernels.top_k_select(x, capacity)
      sent = jnp.minimum(jnp.where(flush, capacity, above), allowed)
      values = jnp.where(jnp.arange(capacity) < sent, values, 0)
      return jnp.zeros_like(x).at[indices].set(values), sent

    # The last planned step flushes what is left with the largest entries.
    flush = state.step == num_steps - 1
    dense, sent = lax.cond(flush | (above > allowed), largest_allowed,
                           lambda: (jnp.where(keep, x, 0), above))
    wire = x.dtype if value_dtype is None else value_dtype
    message = pack(MaskedMessage(dense.astype(wire), sent, x.shape, x.dtype))
    left = state.budget.left - BitCount.of(sent)
    target = state.budget.left.to_float() / (later_steps + 1).astype(
        jnp.float32)
    ratio = jnp.clip(sent / jnp.maximum(target, 1.0) - 1.0, -1.0, 1.0)
    left_out = BitCount.of(jnp.maximum(above - sent, 0))  # stays in residual
    new_state = BudgetedThresholdState(
        state.counters.record(message, left_out), BudgetState(left),
        lam * jnp.exp(adapt_rate * ratio), state.step + 1)
    return message, new_state

  return Compressor(init, encode)
