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

Non-finite policy: if any float entry of ``g_t`` is NaN or +-inf, nothing is
sent (the output is zeros), the residual, PRNG key and counters are left as
they were, and ``nonfinite_steps`` is incremented. A poisoned gradient thus
never enters the residual. ``step`` (the schedule's clock) counts every step
seen, skipped ones included, like the optimizer that follows.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.compress.accounting import find_nodes
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import decoding_update
from sparsejax.compress.base import is_float
from sparsejax.compress.messages import decode
from sparsejax.compress.messages import mean_over_axis


class ErrorFeedbackState(NamedTuple):
  """Residual, wrapped compressor state and error statistics."""
  residual: Any               # e_t, same structure as params
  inner_state: Any            # the compressor's state (counters, key)
  total_error: jax.Array      # sum_t ||a_t - C(a_t)||^2 (float32)
  residual_sq_norm: jax.Array  # ||e_t||^2 (float32)
  nonfinite_steps: jax.Array  # int32: steps skipped for NaN/inf input
  step: jax.Array             # int32: steps seen (for the lr schedule)

  comm_stats_combine = {"residual_norm": "norm"}

  def comm_stats(self) -> dict[str, jax.Array]:
    return {"total_error": self.total_error,
            "residual_norm": jnp.sqrt(self.residual_sq_norm),
            "nonfinite_steps": self.nonfinite_steps}


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
    compressor: any sparsejax :class:`Compressor`.
    carry: fraction ``c`` of the residual added back (1.0 = plain EF).
    learning_rate: optional float or optax schedule ``eta_t`` multiplying the
      input before compression (learning-rate-scaled memory).
    residual_dtype: dtype of the residual (default: the params' dtype; e.g.
      ``jnp.float32`` keeps an fp32 residual for bf16 params).
    axis_name: inside ``shard_map``, a mesh axis to average the messages
      over (each device keeps its own residual); ``update`` then returns the
      mean over devices, as :func:`sparsejax.parallel.compressed_mean` does.

  Returns:
    A :class:`Compressor`: ``update`` gives the dense message ``C(a_t)`` and
    ``encode`` the wire message, so it can itself be sent by a
    communication layer.

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
  schedule = (learning_rate if callable(learning_rate) or learning_rate is None
              else (lambda _: learning_rate))

  def init(params):
    def zeros(p):
      dtype = p.dtype if residual_dtype is None or not is_float(p) \
          else residual_dtype
      return jnp.zeros(p.shape if is_float(p) else (), dtype)

    f32 = jnp.zeros((), jnp.float32)
    i32 = jnp.zeros((), jnp.int32)
    return ErrorFeedbackState(jax.tree.map(zeros, params),
                              compressor.init(params), f32, f32, i32, i32)

  def encode(updates, state):
    finite = all_finite(updates)
    eta = None if schedule is None else schedule(state.step)

    def accumulate(g, e):
      if not is_float(g):
        return g
      g = g if eta is None else g * eta
      return g.astype(e.dtype) + carry * e

    a = jax.tree.map(accumulate, updates, state.residual)
    message, inner_state = compressor.encode(a, state.inner_state)
    sent = decode(message)
    residual = jax.tree.map(
        lambda ai, si, e: (ai - si).astype(e.dtype) if is_float(ai) else e,
        a, sent, state.residual)
    err = sq_norm(residual)
    new_state = ErrorFeedbackState(
        residual, inner_state, state.total_error + err, err,
        state.nonfinite_steps, state.step + 1)
    skipped = state._replace(nonfinite_steps=state.nonfinite_steps + 1,
                             step=state.step + 1)
    new_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o),
                             new_state, skipped)
    message = jax.tree.map(lambda m: jnp.where(finite, m, jnp.zeros_like(m)),
                           message)
    return message, new_state

  if axis_name is None:
    return Compressor(init, encode)
  mean = functools.partial(mean_over_axis, axis_name=axis_name)
  return Compressor(init, encode, decoding_update(encode, mean))


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
