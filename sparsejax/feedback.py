r"""Error feedback: the residual of compression carried in optax state.

.. math::
   a_t = \eta_t g_t + c\, e_t, \qquad m_t = C(a_t), \qquad e_{t+1} = a_t - m_t

with ``eta_t = 1`` (memory in gradient units, the default, as in Sahu et al.'s
DNN code: momentum and weight decay are applied after aggregation) or the
learning rate (``learning_rate=...``, Sahu's logistic-regression code; follow
it with ``optax.scale(-1.0)`` instead of an optimizer with its own step size),
and ``c = carry`` (1 = error feedback; ``c < 1`` keeps only part of the
residual, the hook SA-PEF builds on: the remaining ``(1 - c) e_t`` is applied
elsewhere, e.g. as a step-ahead of the model).

Invariant (tested): with ``carry=1``, ``sum_t m_t + e_T == sum_t a_t``.

Precision: the residual is kept in ``residual_dtype``, by default the params'
float dtype promoted to at least float32 (a float16 residual overflows within
tens of steps of large gradients). The compressor sees ``a_t`` rounded to the
gradient's dtype, so the message (its wire dtype and bits) is the one the
compressor sends without EF, and the rounding error stays in the residual.

Non-finite policy: a step is skipped if any float entry of ``g_t``, of the
decoded message ``m_t`` or of the new residual ``e_{t+1}`` (hence of
``a_t``) is NaN or +-inf: nothing is sent (the output is zeros), the
residual, PRNG key and counters are left as they were, and
``nonfinite_steps`` is incremented; ``internal_nonfinite_steps`` counts the
skipped steps whose gradient was finite (a value overflowed inside EF, e.g.
``a_t`` beyond the gradient dtype's range). A non-finite value thus never
reaches the residual or the update. ``step`` (the schedule's clock) counts
every step seen, skipped ones included, like the optimizer that follows.
The int32 step counters saturate at ``2**31 - 1``.

Inputs: the updates must have the tree, the shapes and the float/non-float
kinds of the params given to ``init`` (checked when ``update`` is traced).

:func:`ef21` is the other error-feedback mechanism (Richtarik et al. 2021):
the state holds the receiver's estimate of the gradient instead of a
residual, with the same precision, non-finite policy and statistics.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax.compress.accounting import find_nodes
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_compressor
from sparsejax.compress.base import check_float_dtype
from sparsejax.compress.base import check_like_params
from sparsejax.compress.base import check_number
from sparsejax.compress.base import decoding_update
from sparsejax.compress.base import is_float
from sparsejax.compress.base import sharded_like
from sparsejax.compress.dgc import DGCState
from sparsejax.compress.messages import decode
from sparsejax.compress.messages import exchanged_axes
from sparsejax.compress.messages import mean_over_axis


def _feedback_stats(state) -> dict[str, jax.Array]:
  """``comm_stats`` of an error-feedback state (EF or EF21)."""
  return {"total_error": state.total_error,
          "residual_norm": jnp.sqrt(state.residual_sq_norm),
          "nonfinite_steps": state.nonfinite_steps,
          "internal_nonfinite_steps": state.internal_nonfinite_steps}


class ErrorFeedbackState(NamedTuple):
  """Residual, wrapped compressor state and error statistics."""
  residual: Any               # e_t, same structure as params
  inner_state: Any            # the compressor's state (counters, key)
  total_error: jax.Array      # sum_t ||a_t - C(a_t)||^2 (float32)
  residual_sq_norm: jax.Array  # ||e_t||^2 (float32)
  nonfinite_steps: jax.Array  # int32: steps skipped for a NaN/inf
  step: jax.Array             # int32: steps seen (for the lr schedule)
  internal_nonfinite_steps: jax.Array  # int32: skipped, finite gradient

  comm_stats_combine = {"residual_norm": "norm"}
  comm_stats = _feedback_stats


def sq_norm(tree) -> jax.Array:
  """``sum ||x||^2`` over the float leaves, in float32."""
  return sum((jnp.sum(jnp.square(x.astype(jnp.float32)))
              for x in jax.tree.leaves(tree) if is_float(x)),
             jnp.zeros((), jnp.float32))


def all_finite(tree) -> jax.Array:
  """Whether every float in ``tree`` is finite (True if there are none)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                            for x in jax.tree.leaves(tree) if is_float(x)]
                           or [jnp.array(True)]))


def error_feedback(compressor: Compressor, *, carry: float = 1.0,
                   learning_rate: float | Callable | None = None,
                   residual_dtype=None, axis_name=None) -> Compressor:
  """Wraps a compressor with error feedback (residual kept in state).

  Args:
    compressor: any sparsejax :class:`Compressor` (not an optax optimizer:
      that goes after error feedback in the chain).
    carry: fraction ``c`` in ``[0, 1]`` of the residual added back (1.0 =
      plain EF).
    learning_rate: optional float ``> 0`` or optax schedule ``eta_t``
      multiplying the input before compression (learning-rate-scaled
      memory).
    residual_dtype: float dtype of the residual (default: the params' float
      dtype promoted to at least float32, e.g. float32 for bf16 params).
    axis_name: inside ``shard_map``, a mesh axis to average the messages
      over (each device keeps its own residual); ``update`` then returns the
      mean over devices, as :func:`sparsejax.parallel.compressed_mean` does.

  Returns:
    A :class:`Compressor`: ``update`` gives the dense message ``C(a_t)`` and
    ``encode`` the wire message, so it can itself be sent by a
    communication layer.

  Raises:
    TypeError, ValueError: at construction, for an argument of the wrong
      type or out of range; when ``update`` is traced, for updates whose
      tree, shapes or float kinds differ from the params'.

  Example:
    >>> import jax.numpy as jnp, optax, sparsejax as sj
    >>> tx = sj.error_feedback(sj.top_k(k=1))
    >>> state = tx.init(jnp.zeros(3))
    >>> out, state = tx.update(jnp.array([1., 2., 0.]), state)
    >>> out.tolist(), state.residual.tolist()
    ([0.0, 2.0, 0.0], [1.0, 0.0, 0.0])
    >>> out, state = tx.update(jnp.array([1., 0.5, 0.]), state)
    >>> out.tolist(), state.residual.tolist()
    ([2.0, 0.0, 0.0], [0.0, 0.5, 0.0])

  References:
    Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and
    other Gradient Compression Schemes", ICML 2019,
    https://arxiv.org/abs/1901.09847
  """
  check_compressor(compressor)
  check_number(carry, "carry", 0, 1)
  if learning_rate is not None and not callable(learning_rate):
    check_number(learning_rate, "learning_rate", 0, low_open=True)
  check_float_dtype(residual_dtype, "residual_dtype")
  schedule = (learning_rate if callable(learning_rate) or learning_rate is None
              else (lambda _: learning_rate))

  def init(params):
    f32 = jnp.zeros((), jnp.float32)
    i32 = jnp.zeros((), jnp.int32)
    return ErrorFeedbackState(_memory_like(params, residual_dtype),
                              _inner_init(compressor, params,
                                          "error_feedback"),
                              f32, f32, i32, i32, i32)

  def encode(updates, state):
    check_like_params(updates, state.residual, "error_feedback")
    eta = None if schedule is None else schedule(state.step)

    def accumulate(g, e):
      if not is_float(g):
        return g
      g = g if eta is None else g * eta
      return g.astype(e.dtype) + carry * e

    a = jax.tree.map(accumulate, updates, state.residual)
    # Compressed in the gradients' dtypes: the wire is the compressor's own.
    message, inner_state = compressor.encode(
        jax.tree.map(lambda ai, g: ai.astype(g.dtype), a, updates),
        state.inner_state)
    sent = decode(message)
    residual = jax.tree.map(
        lambda ai, si, e: (ai - sharded_like(si.astype(ai.dtype), ai)).astype(
            e.dtype) if is_float(ai) else e,
        a, sent, state.residual)
    err = sq_norm(residual)
    finite_input = all_finite(updates)
    # A non-finite a_t always reaches e_{t+1} = a_t - m_t.
    finite = finite_input & all_finite(sent) & all_finite(residual)
    new_state = ErrorFeedbackState(
        residual, inner_state, state.total_error + err, err,
        state.nonfinite_steps, optax.safe_increment(state.step),
        state.internal_nonfinite_steps)
    skipped = _skipped(state, finite_input)._replace(
        step=optax.safe_increment(state.step))
    return _skip_unless(finite, message, new_state, skipped)

  if axis_name is None:
    return Compressor(init, encode)
  mean = functools.partial(mean_over_axis, axis_name=axis_name)
  return Compressor(init, encode, decoding_update(encode, mean))


def _inner_init(compressor: Compressor, params, wrapper: str):
  """``compressor.init(params)``, refusing a compressor with its own memory.

  Error feedback around error feedback, EF21 or DGC (each keeps a residual
  or estimate of what it did not send) would feed the unsent part back
  twice: a silent mistake, refused here at ``init``.

  Raises:
    TypeError: the compressor's state holds an error-feedback, EF21 or DGC
      state.
  """
  state = compressor.init(params)
  for cls, name in ((ErrorFeedbackState, "error_feedback"),
                    (EF21State, "ef21"), (DGCState, "dgc")):
    if find_nodes(state, cls):
      raise TypeError(
          f"{wrapper}'s compressor already keeps its own memory ({name} "
          f"inside): wrap the bare compressor, e.g. {wrapper}(sj.top_k(...))"
          f"{'; dgc has its own residual and goes alone' if name == 'dgc' else ''}")
  return state


def _memory_like(params, dtype):
  """Zeros like the float params in ``dtype`` (default: promoted to at least
  float32), a scalar zero for a non-float leaf."""
  def zeros(p):
    if not is_float(p):
      return jnp.zeros((), p.dtype)
    memory_dtype = (jnp.promote_types(p.dtype, jnp.float32)
                    if dtype is None else dtype)
    return jnp.zeros_like(p, dtype=memory_dtype)  # keeps explicit sharding

  return jax.tree.map(zeros, params)


def _skip_unless(finite, message, new_state, skipped):
  """``(message, new_state)`` if ``finite``, else a zero message and
  ``skipped``. A message exchanged while encoding (PowerSGD, majority vote)
  is skipped on all devices of its axes or on none."""
  for axis in exchanged_axes(message):
    finite = jax.lax.pmin(finite.astype(jnp.int32), axis) > 0
  new_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state,
                           skipped)
  message = jax.tree.map(lambda m: jnp.where(finite, m, jnp.zeros_like(m)),
                         message)
  return message, new_state


def _skipped(state, finite_input):
  """``state`` after a skipped step: only the non-finite counters move."""
  return state._replace(
      nonfinite_steps=optax.safe_increment(state.nonfinite_steps),
      internal_nonfinite_steps=jnp.where(
          finite_input, optax.safe_increment(state.internal_nonfinite_steps),
          state.internal_nonfinite_steps))


def error_feedback_state(state: Any) -> ErrorFeedbackState:
  """The one :class:`ErrorFeedbackState` in an optax state."""
  found = find_nodes(state, ErrorFeedbackState)
  if len(found) != 1:
    raise ValueError(f"expected one ErrorFeedbackState, found {len(found)}")
  return found[0]


def residual(state: Any) -> Any:
  """The error-feedback residual ``e_t`` found in an optax state."""
  return error_feedback_state(state).residual


def with_residual(state: Any, new_residual: Any) -> Any:
  """``state`` with its one error-feedback residual replaced (and its norm).

  E.g. after part of ``e_t`` was sent separately (a periodic residual reset).
  """
  error_feedback_state(state)  # exactly one

  def replace(node):
    if not isinstance(node, ErrorFeedbackState):
      return node
    e = jax.tree.map(lambda new, old: new.astype(old.dtype), new_residual,
                     node.residual)
    return node._replace(residual=e, residual_sq_norm=sq_norm(e))

  return jax.tree.map(replace, state,
                      is_leaf=lambda n: isinstance(n, ErrorFeedbackState))


error_feedback.static_args = ("residual_dtype",)


class EF21State(NamedTuple):
  """The estimate ``g_i``, wrapped compressor state and error statistics.

  ``residual_sq_norm`` is ``||u_t - g_{t+1}||^2``, the part of the input
  not yet in the estimate (EF21's counterpart of the EF residual; reported
  under the same names by :func:`sparsejax.comm_stats`).
  """
  estimate: Any               # g_i, same structure as params
  mean_estimate: Any          # g = mean_i g_i over axis_name (None without)
  inner_state: Any            # the compressor's state (counters, key)
  total_error: jax.Array      # sum_t ||u_t - g_{t+1}||^2 (float32)
  residual_sq_norm: jax.Array  # ||u_t - g_{t+1}||^2 (float32)
  nonfinite_steps: jax.Array  # int32: steps skipped for a NaN/inf
  internal_nonfinite_steps: jax.Array  # int32: skipped, finite gradient

  comm_stats_combine = {"residual_norm": "norm"}
  comm_stats = _feedback_stats


def ef21(compressor: Compressor, *, estimate_dtype=None,
         axis_name=None) -> Compressor:
  r"""EF21: error feedback through a gradient estimate kept in state.

  .. math::
     c_t = C(u_t - g_t), \qquad g_{t+1} = g_t + c_t

  The worker sends ``c_t`` (``encode``'s message, what the counters count)
  and ``update`` returns ``g_{t+1}``, the estimate the receiver holds. With
  ``axis_name`` each device keeps its own ``g_i``, the messages are averaged
  and the output is the shared estimate ``g <- g + mean_i c_i`` (equal to
  ``mean_i g_i``). Usable with every contractive compressor (top-k, scaled
  sign, ...). Precision and non-finite policy as :func:`error_feedback`: the
  estimate is kept in ``estimate_dtype`` (default: the params' float dtype
  promoted to at least float32), the compressor sees ``u_t - g_t`` in the
  gradient's dtype, and a step where ``u_t``, ``c_t`` or ``g_{t+1}`` is not
  finite sends nothing (a zero message) and leaves the estimate as it was
  (so the output is the unchanged ``g_t``); ``nonfinite_steps`` and
  ``internal_nonfinite_steps`` count such steps.

  Args:
    compressor: any sparsejax :class:`Compressor` (not an optax optimizer:
      that goes after EF21 in the chain).
    estimate_dtype: float dtype of the estimate (default above).
    axis_name: inside ``shard_map``, the mesh axis of the workers; do not
      wrap EF21 in :func:`sparsejax.parallel.compressed_mean` (it would
      average the ``c_i`` alone, not the estimate).

  Returns:
    A :class:`Compressor`: ``encode`` gives the wire message ``c_t``,
    ``update`` the estimate ``g_{t+1}`` (not the decoded message).

  Raises:
    TypeError, ValueError: at construction, for an argument of the wrong
      type or value; when ``update`` is traced, for updates whose tree,
      shapes or float kinds differ from the params'.

  Example:
    >>> import jax.numpy as jnp, sparsejax as sj
    >>> tx = sj.ef21(sj.top_k(k=1))
    >>> state = tx.init(jnp.zeros(3))
    >>> out, state = tx.update(jnp.array([1., 2., 0.]), state)
    >>> out.tolist()
    [0.0, 2.0, 0.0]
    >>> out, state = tx.update(jnp.array([1., 2., 0.]), state)
    >>> out.tolist()
    [1.0, 2.0, 0.0]

  References:
    Richtarik, Sokolov, Fatkhullin, "EF21: A New, Simpler, Theoretically
    Better, and Practically Faster Error Feedback", NeurIPS 2021,
    https://arxiv.org/abs/2106.05203
  """
  check_compressor(compressor)
  check_float_dtype(estimate_dtype, "estimate_dtype")

  def init(params):
    estimate = _memory_like(params, estimate_dtype)
    f32 = jnp.zeros((), jnp.float32)
    i32 = jnp.zeros((), jnp.int32)
    return EF21State(estimate, None if axis_name is None else estimate,
                     _inner_init(compressor, params, "ef21"), f32, f32, i32,
                     i32)

  def encode(updates, state):
    check_like_params(updates, state.estimate, "ef21")
    # u - g in the gradients' dtypes: the wire is the compressor's own.
    difference = jax.tree.map(
        lambda u, g: (u.astype(g.dtype) - g).astype(u.dtype) if is_float(u)
        else u, updates, state.estimate)
    message, inner_state = compressor.encode(difference, state.inner_state)
    sent = decode(message)
    estimate = _plus(state.estimate, sent)
    err = sq_norm(jax.tree.map(
        lambda u, g: u.astype(g.dtype) - g if is_float(u) else u, updates,
        estimate))
    finite_input = all_finite(updates)
    finite = finite_input & all_finite(sent) & all_finite(estimate)
    new_state = state._replace(
        estimate=estimate, inner_state=inner_state,
        total_error=state.total_error + err, residual_sq_norm=err)
    return _skip_unless(finite, message, new_state,
                        _skipped(state, finite_input))

  receive = (decode if axis_name is None else
             functools.partial(mean_over_axis, axis_name=axis_name))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    # g as it was: encode's skip selects with this device's finiteness.
    shared = state.mean_estimate
    message, state = encode(updates, state)
    received = receive(message)
    estimate = state.estimate
    if axis_name is not None:  # g <- g + mean_i c_i
      estimate = _plus(shared, received)
      state = state._replace(mean_estimate=estimate)
    out = jax.tree.map(
        lambda g, c, u: sharded_like(g.astype(u.dtype), u) if is_float(u)
        else c.astype(u.dtype), estimate, received, updates)
    return out, state

  return Compressor(init, encode, update)


ef21.static_args = ("estimate_dtype",)


def _plus(estimate, sent):
  """``g + c`` on the float leaves, in the estimate's dtype and sharding."""
  return jax.tree.map(
      lambda g, c: g + sharded_like(c.astype(g.dtype), g) if is_float(g)
      else g, estimate, sent)


def estimate(state: Any) -> Any:
  """The EF21 estimate ``g_i`` found in an optax state (the one
  :class:`EF21State` in it)."""
  found = find_nodes(state, EF21State)
  if len(found) != 1:
    raise ValueError(f"expected one EF21State, found {len(found)}")
  return found[0].estimate
