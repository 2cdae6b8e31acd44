r"""Deep Gradient Compression (Lin et al. 2018): top-k with momentum correction.

Per worker, with the momentum ``u`` and the accumulation ``v`` kept in
state (the paper's sparsification with momentum correction, local gradient
clipping and momentum factor masking):

.. math::
   g \leftarrow g \min\big(1, \tau / \|g\|\big), \quad
   u \leftarrow m u + g, \quad v \leftarrow v + u, \quad
   \tilde g = \mathrm{top}_\rho(v), \quad
   u \leftarrow u \odot \lnot M, \quad v \leftarrow v \odot \lnot M

where ``M`` is the mask of the entries sent. The receiver averages the
``\tilde g`` of the workers and applies plain SGD (no momentum: it is in
``u``). The density ``rho`` is warmed up exponentially: ``1/4``, ``1/16``,
``1/64``, ... (the paper's sparsity 75%, 93.75%, 98.4375%, 99.6%) for equal
shares of ``warmup_steps``, then the final ``ratio``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import check_int
from sparsejax.compress.base import check_like_params
from sparsejax.compress.base import check_number
from sparsejax.compress.base import check_ratio
from sparsejax.compress.base import decoding_update
from sparsejax.compress.base import is_float
from sparsejax.compress.base import sharded_like
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.messages import Message
from sparsejax.compress.messages import decode
from sparsejax.compress.messages import mean_over_axis
from sparsejax.compress.messages import message_overflow
from sparsejax.compress.messages import message_size
from sparsejax.compress.messages import message_support
from sparsejax.compress.messages import message_type
from sparsejax.compress.sparsifiers import top_k


class DGCState(NamedTuple):
  """The momentum ``u``, the accumulation ``v`` (float32 at least, a scalar
  zero for a non-float leaf), the counters of the messages sent, the steps
  seen (the warm-up clock, skipped steps included) and the steps skipped for
  a NaN or infinity."""
  momentum: Any
  accumulation: Any
  counters: CommCounters
  step: jax.Array  # int32
  nonfinite_steps: jax.Array  # int32

  comm_stats_combine = {}

  def comm_stats(self) -> dict[str, Any]:
    return {"nonfinite_steps": self.nonfinite_steps}


@message_type
class StagedMessage(Message):
  """The message of the current stage of a schedule of compressors.

  ``stages`` holds one message pytree per stage, of static shapes; only
  ``stages[stage]`` is sent (its size is the message's), the others are
  zero-filled placeholders that are never read.
  """
  stages: tuple
  stage: jax.Array  # int32

  def _switch(self, fn):
    return jax.lax.switch(self.stage, [functools.partial(fn, s)
                                       for s in self.stages])

  def to_dense(self) -> Any:
    return self._switch(decode)

  def size(self) -> tuple[BitCount, BitCount]:
    return self._switch(message_size)

  def support(self) -> Any:
    return self._switch(message_support)

  def overflow(self) -> BitCount:
    return self._switch(message_overflow)

  def mean(self, axis_name, sparse_crossover: bool = True) -> Any:
    """The current stage's mean (every device is in the same stage)."""
    return self._switch(functools.partial(
        mean_over_axis, axis_name=axis_name,
        sparse_crossover=sparse_crossover))


def warmup_ratios(ratio: float) -> tuple[float, ...]:
  """The warm-up densities ``4**-(j + 1)`` above ``ratio`` (the paper's
  sparsity 75%, 93.75%, 98.4375%, 99.6% for ``ratio = 0.001``).

  >>> from sparsejax.compress.dgc import warmup_ratios
  >>> warmup_ratios(0.001)
  (0.25, 0.0625, 0.015625, 0.00390625)
  """
  ratios = []
  while 4.0 ** -(len(ratios) + 1) > ratio:
    ratios.append(4.0 ** -(len(ratios) + 1))
  return tuple(ratios)


def dgc(ratio: float, *, momentum: float = 0.9,
        clip_norm: float | None = None, num_workers: int | None = None,
        warmup_steps: int = 0, scope: str = "global",
        axis_name=None) -> Compressor:
  r"""Deep Gradient Compression: momentum correction, clipping, masking.

  .. math::
     u \leftarrow m u + \mathrm{clip}(g), \quad v \leftarrow v + u, \quad
     \tilde g = \mathrm{top}_\rho(v), \quad
     (u, v) \leftarrow (u, v) \odot \lnot M

  (module docstring). ``update`` returns the sent ``\tilde g`` (with
  ``axis_name``, its mean over the devices). DGC replaces both error
  feedback and the optimizer's momentum: follow it with plain SGD,
  ``optax.chain(sj.dgc(0.001), optax.sgd(learning_rate))``, not with
  ``optax.sgd(..., momentum=...)``, and do not wrap it in
  :func:`sparsejax.error_feedback` (``v`` is its residual). Weight decay
  goes on the gradient before it (``optax.add_decayed_weights`` first in
  the chain).

  Local gradient clipping (``clip_norm``): each worker rescales its gradient
  so that its global norm is at most ``tau``. ``clip_norm`` is the
  threshold one would put on the aggregated gradient; the paper clips each
  worker's share ``G_k`` of the summed aggregate at
  ``clip_norm * N**-0.5``. Here the aggregate is the mean of the workers'
  gradients, whose shares are ``g_k / N``, so ``tau = clip_norm * N**0.5``
  on ``g_k`` (the same rule).

  The selection is :func:`~sparsejax.top_k` of ``v`` (in the gradient's
  dtype), its message a :class:`~sparsejax.compress.SparseMessage` (per
  leaf, or one :class:`~sparsejax.compress.FlatMessage` with
  ``scope="global"``) whose bits are counted exactly; during the warm-up a
  :class:`StagedMessage` of the current stage's. ``u`` and ``v`` are zeroed
  where an entry is sent. A step whose gradient or ``v`` holds a NaN or an
  infinity is skipped: nothing is sent (a zero update), ``u``, ``v`` and
  the counters stay as they were (the warm-up clock moves on, as on the
  other devices), and ``comm_stats(state)["nonfinite_steps"]`` counts it.

  Args:
    ratio: final density ``rho`` in ``(0, 1]`` (the paper: 0.001).
    momentum: ``m`` in ``[0, 1)``.
    clip_norm: ``> 0``, the aggregated gradient's norm threshold (``None``:
      no clipping).
    num_workers: ``N``, an int ``>= 1`` (default: the size of ``axis_name``,
      else 1).
    warmup_steps: an int ``>= 0``: the steps of the exponential warm-up,
      shared equally by the densities of :func:`warmup_ratios`.
    scope: ``"global"`` (one top-k over all leaves) or ``"leaf"`` (per
      tensor, the paper's per-layer threshold).
    axis_name: inside ``shard_map``, the mesh axis to average the messages
      over (each device keeps its own ``u`` and ``v``).

  Example:
    >>> import jax.numpy as jnp, sparsejax as sj
    >>> tx = sj.dgc(0.5, momentum=0.5)
    >>> state = tx.init(jnp.zeros(4))
    >>> out, state = tx.update(jnp.array([1., -4., 3., 0.5]), state)
    >>> out.tolist(), state.accumulation.tolist()
    ([0.0, -4.0, 3.0, 0.0], [1.0, 0.0, 0.0, 0.5])
    >>> state.momentum.tolist()
    [1.0, 0.0, 0.0, 0.5]

  References:
    Lin, Han, Mao, Wang, Dally, "Deep Gradient Compression: Reducing the
    Communication Bandwidth for Distributed Training", ICLR 2018,
    https://arxiv.org/abs/1712.01887
  """
  check_ratio(ratio, static=True)
  check_number(momentum, "momentum", 0, 1, high_open=True)
  if clip_norm is not None:
    check_number(clip_norm, "clip_norm", 0, low_open=True)
  if num_workers is not None:
    num_workers = check_int(num_workers, "num_workers", 1)
  warmup_steps = check_int(warmup_steps, "warmup_steps", 0)
  ratios = warmup_ratios(ratio) if warmup_steps else ()
  stages = [top_k(r, scope=scope) for r in ratios + (ratio,)]

  def init(params):
    def zeros(p):
      if not is_float(p):
        return jnp.zeros((), p.dtype)
      return jnp.zeros_like(p, dtype=jnp.promote_types(p.dtype, jnp.float32))

    return DGCState(jax.tree.map(zeros, params), jax.tree.map(zeros, params),
                    CommCounters.zero(), jnp.zeros((), jnp.int32),
                    jnp.zeros((), jnp.int32))

  def clip(updates):
    if clip_norm is None:
      return updates
    workers = num_workers or (1 if axis_name is None
                              else jax.lax.axis_size(axis_name))
    floats = [g.astype(jnp.float32) for g in jax.tree.leaves(updates)
              if is_float(g)]
    # Scaled by the largest entry, so the squares cannot overflow.
    top = jnp.max(jnp.stack([jnp.max(jnp.abs(g), initial=0) for g in floats]
                            or [jnp.zeros(())]))
    unit = jnp.where(top > 0, top, 1)
    norm = top * jnp.sqrt(sum((jnp.sum(jnp.square(g / unit)) for g in floats),
                              jnp.zeros((), jnp.float32)))
    scale = jnp.minimum(1.0, clip_norm * math.sqrt(workers) / norm)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype) if is_float(g)
                        else g, updates)

  def select(x, step):
    """The message of the stage ``step`` is in (a switch in the warm-up)."""
    def stage_message(j):
      return stages[j].encode(x, stages[j].init(None))[0]

    if not ratios:
      return stage_message(0)
    shapes = [jax.eval_shape(functools.partial(stage_message, j))
              for j in range(len(stages))]

    def branch(j):
      return tuple(stage_message(i) if i == j else jax.tree.map(
          lambda s: jnp.zeros(s.shape, s.dtype), shapes[i])
                   for i in range(len(stages)))

    stage = (jnp.minimum(step, warmup_steps) * len(ratios)) // warmup_steps
    return StagedMessage(jax.lax.switch(stage, [
        functools.partial(branch, j) for j in range(len(stages))]), stage)

  def encode(updates, state):
    check_like_params(updates, state.momentum, "dgc")
    g = clip(updates)
    u = jax.tree.map(lambda gi, ui: momentum * ui + gi.astype(ui.dtype)
                     if is_float(gi) else ui, g, state.momentum)
    v = jax.tree.map(lambda ui, vi, gi: vi + ui if is_float(gi) else vi,
                     u, state.accumulation, g)
    message = select(jax.tree.map(lambda vi, gi: vi.astype(gi.dtype)
                                  if is_float(gi) else gi, v, g),
                     state.step)
    sent = message_support(message)

    def unsent(memory, mask, gi):
      if not is_float(gi):
        return memory
      return jnp.where(sharded_like(mask, memory) > 0, 0, memory)

    new_state = DGCState(jax.tree.map(unsent, u, sent, g),
                         jax.tree.map(unsent, v, sent, g),
                         state.counters.record(message),
                         optax.safe_increment(state.step),
                         state.nonfinite_steps)
    # A NaN or infinity in the gradient or in v skips the step.
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in
                                jax.tree.leaves((g, v)) if is_float(x)]
                               or [jnp.array(True)]))
    skipped = state._replace(
        nonfinite_steps=optax.safe_increment(state.nonfinite_steps))
    # The clock moves on either way (and stays the same on every device).
    new_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state,
                             skipped)._replace(step=new_state.step)

    def zero_unless_finite(tree):
      return jax.tree.map(lambda m: jnp.where(finite, m, jnp.zeros_like(m)),
                          tree)

    if isinstance(message, StagedMessage):  # every device in the same stage
      return message.replace(stages=zero_unless_finite(message.stages)), (
          new_state)
    return zero_unless_finite(message), new_state

  if axis_name is None:
    return Compressor(init, encode)
  mean = functools.partial(mean_over_axis, axis_name=axis_name)
  return Compressor(init, encode, decoding_update(encode, mean))


dgc.static_args = ("ratio", "warmup_steps", "num_workers")
