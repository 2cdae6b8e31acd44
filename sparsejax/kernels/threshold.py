"""Threshold selection into a fixed-size buffer by block counts + prefix sums.

``mask = |x| >= threshold`` (the reference's comparison, in ``x``'s dtype, so
denormal handling matches the backend), viewed as rows of 32 and packed into
one uint32 bit word per row. Row popcounts and their prefix sum give every
output slot its row (binary search) and its rank inside the row, and a
5-step popcount search finds the bit. No ``jnp.nonzero``, no element-wise
cumsum. On GPU the compaction can go through :mod:`pallas_gpu`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from sparsejax.kernels import _common as c
from sparsejax.kernels import pallas_gpu
from sparsejax.kernels import reference


@functools.partial(jax.jit, static_argnames=("max_count",))
def threshold_select(x: jax.Array, threshold, max_count: int):
  """All entries with ``|x| >= threshold``, in index order, into ``max_count``.

  Returns ``(values[max_count], indices[max_count], count)``; ``count`` is the
  true number of qualifying entries (``count > max_count`` means overflow and
  the buffer holds the lowest indices). ``threshold`` may be traced. Same
  result as :func:`reference.threshold_select_reference`.
  """
  return threshold_select_impl(x, threshold, max_count)


def _threshold_key(threshold, dtype) -> jax.Array:
  """uint32 key ``tk`` with ``|x| >= t``  <=>  ``magnitude_key(x) >= tk``."""
  t = jnp.asarray(threshold, dtype).astype(jnp.float32)
  bits = lax.bitcast_convert_type(t, jnp.uint32)
  return jnp.where(jnp.isnan(t), jnp.uint32(0xFFFFFFFF),
                   jnp.where(t <= 0, jnp.uint32(2), bits + jnp.uint32(2)))


def threshold_select_impl(x, threshold, max_count: int,
                          pallas: dict | None | str = "auto"):
  """Unjitted :func:`threshold_select`; ``pallas`` as in ``topk``.

  The Pallas path compares order keys, i.e. never flushes denormals; the XLA
  path uses the reference's float comparison (on CPU, XLA treats denormals
  as zero in comparisons, and so does the reference).
  """
  c.check_vector(x)
  n = x.shape[0]
  max_count = c.check_int(max_count, "max_count", 0)
  if n == 0:
    return reference.threshold_select_reference(x, threshold, max_count)
  if pallas == "auto":
    pallas = pallas_gpu.default_config()
  size = min(max_count, n)
  if pallas is not None:
    key = c.magnitude_key(x)
    key = c.pad_to(key, c.round_up(n, pallas["block"]), 0)
    pos, valid, count = pallas_gpu.threshold_positions(
        key, _threshold_key(threshold, x.dtype), size, **pallas)
  else:
    mask = jnp.abs(x) >= jnp.asarray(threshold, x.dtype)
    length = c.round_up(n, c.ROW)
    mask2d = c.pad_to(mask, length, False).reshape(-1, c.ROW)
    pos, valid, count = c.compact(mask2d, size)
  idx = jnp.where(valid, pos, n).astype(jnp.int32)
  values = c.gather_or_zero(x, idx)
  if max_count > size:
    values = jnp.pad(values, (0, max_count - size))
    idx = jnp.pad(idx, (0, max_count - size), constant_values=n)
  return values, idx, count
