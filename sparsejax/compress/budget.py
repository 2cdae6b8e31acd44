r"""Hard threshold under a total communication budget (after Sahu et al.).

Sahu et al.'s method is a *constant* threshold ``lambda``: it spends more when
the accumulated update is large, which is why it can beat top-k at the same
total volume (:func:`~sparsejax.compress.calibration.calibrate_threshold`
finds the constant that spends a given total). This rule keeps that property
under a budget of ``B`` elements (or bits) over ``T`` steps that is never
exceeded: ``lambda`` stays nearly constant and is corrected slowly, when the
projected total spend leaves the budget; it does not aim at an even spend per
step (that is top-k's behaviour).

Notation: ``E`` elements are what the budget buys (``B``, or
``(B - 32 T) / (v + 32)`` for a bits budget with ``v`` value bits, 32 index
bits and a 32-bit header per message), ``K = E / T`` the per-step share,
``tau`` = ``correction_steps`` (default ``T / 10``), ``R_t = T - 1 - t``
the steps after step ``t = 0, ..., T - 1``. On the flattened update ``a``:

1. Start: ``lambda_0`` = ``initial_threshold``, else the magnitude of the
   ``K``-th largest entry of the first update with at least ``K`` nonzero
   entries; until then ``lambda = 0`` and every nonzero entry is sent (fewer
   than ``K``), so spending starts at once.
2. Send every nonzero ``a_i`` with ``|a_i| >= lambda_t`` (the demand
   ``D_t`` entries), unless ``D_t`` exceeds the allowance

   .. math::
      A_t = \min\Big(\Big\lfloor \frac{L_t - h (R_t + 1)}{c} \Big\rfloor,\;
            \Big\lfloor \frac{L_t - h (R_t + 1)}{c} - R_t\, r K \Big\rfloor
            \Big)

   (``L_t`` the budget left, ``c`` the cost of an element and ``h`` of a
   header in the budget's unit, ``r`` = ``reserve``): then only the ``A_t``
   largest are sent and the rest stay in the error-feedback residual, counted
   as ``overflow``. The first term is exact (64-bit
   :class:`~sparsejax.compress.bitcount.BitCount`), so the total
   never exceeds ``B``; the second holds back ``r K`` elements for every later
   step. The last planned step sends the ``A_{T-1}`` largest entries whatever
   the threshold, so the run ends on budget.
3. Projection: with fast and slow moving averages of the demand,
   ``f_t = f_{t-1} + (D_t - f_{t-1}) / h_f`` and the same ``s_t`` with
   ``h_s`` (``h_s = tau``, ``h_f = max(1, tau / 4)``), the demand's decay rate
   per step ``rho_t = min(0, (log(1 + f_t) - log(1 + s_t)) / (h_s - h_f))``
   and the elements sent so far ``S_t``, the projected total is

   .. math::
      P_t = S_t + f_t \sum_{j=1}^{R_t} e^{\rho_t j}

   (a falling demand, as when gradients shrink during training, is projected
   to keep falling, so a spend that is high early is not read as an overrun).
4. Correction (steps before the last):

   .. math::
      \lambda_{t+1} = \lambda_t \exp\big(\mathrm{clip}(\log(P_t / E),
      -3, 3) / \tau\big)

   ``lambda`` moves by a factor at most ``e^{3/tau}`` per step and, being
   multiplicative, never reaches 0.

Started from a calibrated constant, the rule keeps its uneven spend and
corrects it when the run departs from the pilot; started from the first
update, it has no knowledge of the future gradient scale and spends more
evenly. Past step ``T`` only what is left is spent (with a bits budget, a
message the budget cannot pay a header for still costs its 32-bit header,
counted in ``bits_sent`` only). The message is a
:class:`~sparsejax.compress.messages.MaskedMessage`. A step within its
allowance costs one comparison pass; the first step and a step over its
allowance find their threshold by bisection on the float bits (31 counting
passes, under ``lax.cond``).

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

from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_float_dtype
from sparsejax.compress.base import check_int
from sparsejax.compress.base import check_number
from sparsejax.compress.base import flatten_floats
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import MaskedMessage
from sparsejax.compress.messages import dtype_bits

BUDGET_UNITS = ("elements", "bits")
MAX_BUDGET = 2**63        # a BitCount holds up to 2**64 - 1
MAX_STEPS = 2**31 - 2     # the step counter is int32
HEADER_BITS = 32          # count header of a variable-size message
INDEX_BITS = 32
MAX_CORRECTION = 3.0      # |log(P / E)| beyond this moves lambda no faster
_INF_BITS = 0x7F800000    # float32 +inf as int32
_TINY = np.finfo(np.float32).tiny
_MAX_INT32_FLOAT = 2**31 - 128  # the largest float32 below 2**31


class BudgetState(NamedTuple):
  """What is left of a total budget, in its unit (elements or bits)."""
  left: BitCount

  def comm_stats(self) -> dict[str, BitCount]:
    return {"budget_left": self.left}


class BudgetedThresholdState(NamedTuple):
  """Counters, budget left, the threshold, the step and the demand averages."""
  counters: CommCounters
  budget: BudgetState
  threshold: jax.Array    # float32 lambda_t; 0 until the first nonzero update
  step: jax.Array         # int32
  demand_fast: jax.Array  # float32 f_t
  demand_slow: jax.Array  # float32 s_t


def _exact_count(value: int) -> BitCount:
  """A static ``0 <= value < 2**64`` as a :class:`BitCount`."""
  return BitCount(jnp.asarray(value >> 32, jnp.uint32),
                  jnp.asarray(value & 0xFFFFFFFF, jnp.uint32))


def _affordable(free: BitCount, cost: int, limit: int) -> jax.Array:
  """``min(floor(free / cost), limit)`` as int32, never above the exact value.

  Exact below ``2**31``; above, a float32 estimate lowered by ``2**-20``
  relative (more than its rounding error).
  """
  small = free.clip_to_int32()
  estimate = jnp.floor(free.to_float() * np.float32(1 - 2**-20) / cost)
  estimate = jnp.clip(estimate, 0, min(limit, _MAX_INT32_FLOAT)).astype(
      jnp.int32)
  return jnp.minimum(jnp.maximum(small // cost, estimate), limit)


def _kth_largest(magnitude: jax.Array, k) -> jax.Array:
  """The largest float32 ``v >= 0`` with ``|{i: magnitude_i >= v}| >= k``.

  The ``k``-th largest entry of ``magnitude`` (>= 0), found by bisection on
  the float bits (their order is the order of the floats); 0 if there are
  fewer than ``k`` nonzero (normal) entries.
  """

  def halve(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(magnitude >= lax.bitcast_convert_type(mid, jnp.float32),
                     dtype=jnp.int32) >= k
    return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

  lo, _ = lax.fori_loop(0, 31, halve, (jnp.int32(0), jnp.int32(_INF_BITS)))
  v = lax.bitcast_convert_type(lo, jnp.float32)
  return jnp.where(v >= _TINY, v, 0.0)  # subnormals may compare as 0


def _next_float(v: jax.Array) -> jax.Array:
  """The smallest float32 above ``v >= 0``."""
  return lax.bitcast_convert_type(
      lax.bitcast_convert_type(v, jnp.int32) + 1, jnp.float32)


def budgeted_hard_threshold(budget: float, num_steps: int, *,
                            unit: str = "elements",
                            initial_threshold: float | None = None,
                            correction_steps: float | None = None,
                            reserve: float = 0.1,
                            value_dtype=None) -> Compressor:
  """The compressor of ``hard_threshold(budget=..., num_steps=...)``.

  The rule is in the module docstring; the arguments:

  Args:
    budget: ``B``, a number in ``[1, 2**63]``, elements (or bits with
      ``unit="bits"``: then more than the ``32 * num_steps`` header bits,
      and enough for one element).
    num_steps: ``T``, an int in ``[1, 2**31 - 2]``.
    unit: ``"elements"`` or ``"bits"``.
    initial_threshold: ``lambda_0 > 0`` (e.g. the result of
      :func:`~sparsejax.compress.calibration.calibrate_threshold`); default
      from the first nonzero update.
    correction_steps: ``tau >= 1``, the time scale of the correction in
      steps (default ``max(1, T / 10)``).
    reserve: ``r`` in ``[0, 1)``, the fraction of the per-step share held
      back for every later step.
    value_dtype: wire dtype of the values (default: the update's dtype).
  """
  check_number(budget, "budget", 1, MAX_BUDGET, static=True)
  num_steps = check_int(num_steps, "num_steps", 1, MAX_STEPS)
  if unit not in BUDGET_UNITS:
    raise ValueError(f"unit must be one of {BUDGET_UNITS}, got {unit!r}")
  if initial_threshold is not None:
    check_number(initial_threshold, "initial_threshold", 0, low_open=True)
  tau = max(1.0, num_steps / 10) if correction_steps is None else float(
      correction_steps)
  if correction_steps is not None:
    check_number(correction_steps, "correction_steps", 1, static=True)
  check_number(reserve, "reserve", 0, 1, high_open=True, static=True)
  check_float_dtype(value_dtype, "value_dtype")
  total = int(budget)
  header = HEADER_BITS if unit == "bits" else 0
  if header * num_steps >= total:
    raise ValueError(f"budget of {total} bits does not cover the "
                     f"{HEADER_BITS}-bit headers of num_steps={num_steps} "
                     "messages: raise budget or lower num_steps")
  slow_horizon = tau
  fast_horizon = max(1.0, tau / 4)

  def elements_bought(dtype) -> tuple[int, float]:
    """The cost of an element in the budget's unit, and ``E``."""
    wire = dtype if value_dtype is None else value_dtype
    cost = 1 if unit == "elements" else dtype_bits(wire) + INDEX_BITS
    elements = (total - header * num_steps) / cost
    if elements < 1:
      raise ValueError(f"budget of {total} {unit} over num_steps={num_steps} "
                       f"buys no element of {jnp.dtype(wire).name} (needs "
                       f"{header * num_steps + cost}): raise budget")
    return cost, elements

  if value_dtype is not None:
    elements_bought(value_dtype)

  def init(params):
    del params  # nothing depends on them (optax.tree.map_params passes none)
    lam = 0.0 if initial_threshold is None else initial_threshold
    zero = jnp.zeros((), jnp.float32)
    return BudgetedThresholdState(
        CommCounters.zero(), BudgetState(_exact_count(total)),
        jnp.asarray(lam, jnp.float32), jnp.zeros((), jnp.int32), zero, zero)

  def encode(updates, state):
    leaves, treedef = jax.tree.flatten(updates)
    x, pack = flatten_floats(leaves, treedef)
    n = x.shape[0]
    if n == 0:  # nothing to select: the non-float leaves travel whole
      message = pack(DenseMessage(x, x.shape, x.dtype))
      return message, state._replace(counters=state.counters.record(message),
                                     step=state.step + 1)
    cost, elements = elements_bought(x.dtype)
    share = elements / num_steps
    magnitude = jnp.abs(x).astype(jnp.float32)
    nonzero = magnitude > 0
    lam = state.threshold
    fresh = (lam == 0) | (state.step == 0)
    if initial_threshold is None:

      def first_threshold():  # 0 while fewer than K entries are nonzero
        v = _kth_largest(magnitude, min(n, max(1, math.floor(share))))
        return jnp.where(jnp.isfinite(v), v, 0.0)

      lam = lax.cond(lam == 0, first_threshold, lambda: lam)
    demand = jnp.sum(nonzero & (magnitude >= lam), dtype=jnp.int32)

    later = jnp.maximum(num_steps - 1 - state.step, 0)
    left = state.budget.left
    short = left.clip_to_int32() < header  # past T: not even a header left
    free = left - BitCount.of(later + 1, header)  # after the planned headers
    soft = jnp.floor(free.to_float() / cost - later * (reserve * share))
    soft = jnp.clip(soft, 0, min(n, _MAX_INT32_FLOAT)).astype(jnp.int32)
    allowed = jnp.where(short, 0,
                        jnp.minimum(_affordable(free, cost, n), soft))
    # The last planned step, or a demand over the allowance: the `allowed`
    # largest entries (fewer if ties straddle the cut).
    flush = state.step == num_steps - 1
    cut = lax.cond(flush | (demand > allowed),
                   lambda: _next_float(_kth_largest(magnitude, allowed + 1)),
                   lambda: lam)
    keep = nonzero & (magnitude >= cut)
    sent = jnp.sum(keep, dtype=jnp.int32)
    wire = x.dtype if value_dtype is None else value_dtype
    message = pack(MaskedMessage(jnp.where(keep, x, 0).astype(wire), sent,
                                 x.shape, x.dtype))
    counters = state.counters.record(
        message, BitCount.of(jnp.maximum(demand - sent, 0)))
    left = left.select(short, left - BitCount.of(sent, cost, header))

    d = demand.astype(jnp.float32)
    fast = jnp.where(fresh, d, state.demand_fast
                     + (d - state.demand_fast) / fast_horizon)
    slow = jnp.where(fresh, d, state.demand_slow
                     + (d - state.demand_slow) / slow_horizon)
    lam_next = jnp.where(
        (state.step < num_steps - 1) & (lam > 0),
        corrected(lam, counters.elements.to_float(), fast, slow, later,
                   elements), lam)
    new_state = BudgetedThresholdState(counters, BudgetState(left), lam_next,
                                       state.step + 1, fast, slow)
    return message, new_state

  def corrected(lam, spent, fast, slow, later, elements):
    rho = jnp.zeros(())
    if slow_horizon > fast_horizon:
      rho = jnp.minimum(0.0, (jnp.log1p(fast) - jnp.log1p(slow))
                        / (slow_horizon - fast_horizon))
    later = later.astype(jnp.float32)
    decaying = rho < -1e-6
    steps_ahead = jnp.where(  # sum_{j=1}^{R} exp(rho j)
        decaying, jnp.exp(rho) * jnp.expm1(rho * later)
        / jnp.expm1(jnp.where(decaying, rho, -1.0)), later)
    projected = spent + fast * steps_ahead
    error = jnp.clip(jnp.log(jnp.maximum(projected, 1.0) / elements),
                     -MAX_CORRECTION, MAX_CORRECTION)
    lam_next = jnp.maximum(lam * jnp.exp(error / tau), _TINY)
    return jnp.where(jnp.isfinite(lam_next), lam_next, lam)

  return Compressor(init, encode)

