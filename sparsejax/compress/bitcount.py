"""Exact 64-bit counts of bits and elements, jit-safe without ``jax_enable_x64``.

Bits on the wire overflow int32 quickly (one dense fp32 step of a 100M model
is 3.2e9 bits) and float32 loses exactness beyond 2**24, so sizes are kept in
:class:`BitCount`, an exact unsigned 64-bit counter made of two ``uint32``
words. A ``BitCount`` may hold arrays (one count per client, say): every
operation here is elementwise, and :meth:`BitCount.total` sums over the
leading axis exactly. This is the only place in sparsejax that does
arithmetic on the two words.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_LO_MASK = np.uint32(0xFFFF)
MAX_SUMMANDS = 2**16  # BitCount.total is exact for up to this many counts


class BitCount(NamedTuple):
  """An exact 64-bit unsigned counter ``hi * 2**32 + lo`` as two uint32 words."""
  hi: jax.Array
  lo: jax.Array

  @classmethod
  def zero(cls, shape=()) -> "BitCount":
    z = jnp.zeros(shape, jnp.uint32)
    return cls(z, z)

  @classmethod
  def of(cls, count, multiplier: int = 1, offset: int = 0) -> "BitCount":
    """``count * multiplier + offset`` exactly; ``count`` < 2**32, ints static."""
    if not 0 <= multiplier < 2**16 or not 0 <= offset < 2**32:
      raise ValueError(f"multiplier/offset out of range: {multiplier}, {offset}")
    count = jnp.asarray(count).astype(jnp.uint32)
    # count * m = (c_hi * 2**16 + c_lo) * m with both partial products < 2**32.
    lo_part = (count & _LO_MASK) * np.uint32(multiplier)
    hi_part = (count >> 16) * np.uint32(multiplier)
    total = cls(hi_part >> 16, (hi_part & _LO_MASK) << 16)
    return total + cls(jnp.zeros((), jnp.uint32), lo_part) + cls(
        jnp.zeros((), jnp.uint32), jnp.full((), offset, jnp.uint32))

  @classmethod
  def sum(cls, counts: Iterable["BitCount"]) -> "BitCount":
    """Exact sum of several counts (of broadcastable shapes)."""
    total = cls.zero()
    for c in counts:
      total = total + c
    return total

  def __add__(self, other: "BitCount") -> "BitCount":  # type: ignore[override]
    lo = self.lo + other.lo  # wraps modulo 2**32
    carry = (lo < self.lo).astype(jnp.uint32)
    return BitCount(self.hi + other.hi + carry, lo)

  def __sub__(self, other: "BitCount") -> "BitCount":
    """``self - other`` for ``self >= other`` (wraps modulo 2**64 otherwise)."""
    borrow = (self.lo < other.lo).astype(jnp.uint32)
    return BitCount(self.hi - other.hi - borrow, self.lo - other.lo)

  def take(self, index) -> "BitCount":
    """The counts at ``index`` of an array of counts (``counts[index]``)."""
    return BitCount(self.hi[index], self.lo[index])

  def select(self, pred, other: "BitCount") -> "BitCount":
    """``self`` where ``pred`` else ``other`` (elementwise, broadcasting)."""
    return BitCount(jnp.where(pred, self.hi, other.hi),
                    jnp.where(pred, self.lo, other.lo))

  def masked(self, pred) -> "BitCount":
    """``self`` where ``pred`` else 0."""
    return self.select(pred, BitCount.zero())

  def total(self, where=None) -> "BitCount":
    """Exact sum over the leading axis (at most 2**16 entries).

    ``where``: optional bool mask of the entries to include.
    """
    counts = self if where is None else self.masked(where)
    if counts.lo.shape[0] > MAX_SUMMANDS:
      raise ValueError(f"BitCount.total sums at most {MAX_SUMMANDS} counts, "
                       f"got {counts.lo.shape[0]}")
    lo_low = jnp.sum(counts.lo & _LO_MASK, axis=0, dtype=jnp.uint32)
    lo_high = jnp.sum(counts.lo >> 16, axis=0, dtype=jnp.uint32)
    hi = jnp.sum(counts.hi, axis=0, dtype=jnp.uint32)
    # hi * 2**32 + lo_high * 2**16 + lo_low, each part below 2**32.
    return (BitCount(hi + (lo_high >> 16), lo_high << 16)
            + BitCount(jnp.zeros_like(lo_low), lo_low))

  def clip_to_int32(self) -> jax.Array:
    """``min(value, 2**31 - 1)`` as int32."""
    big = (self.hi > 0) | (self.lo > np.uint32(2**31 - 1))
    return jnp.where(big, np.int32(2**31 - 1), self.lo.astype(jnp.int32))

  def to_float(self) -> jax.Array:
    """Value as float32 (relative error < 1e-7); use :func:`exact` on host."""
    return (self.hi.astype(jnp.float32) * np.float32(2.0**32)
            + self.lo.astype(jnp.float32))


def exact(count: BitCount):
  """The exact value of a concrete :class:`BitCount` on the host.

  A Python ``int`` for a scalar count, a NumPy object array of ints for an
  array of counts. The values of ``comm_stats(state)`` are float32 views, not
  counts: ``comm_stats(state, exact=True)`` gives them as Python ints.

  Raises:
    TypeError: if ``count`` is not a :class:`BitCount`.
  """
  if not isinstance(count, BitCount):
    raise TypeError(
        f"exact: count must be a BitCount, got {type(count).__name__}; for "
        "the values of comm_stats(state) use comm_stats(state, exact=True)")
  hi, lo = np.asarray(count.hi), np.asarray(count.lo)
  if hi.ndim == 0 and lo.ndim == 0:
    return (int(hi) << 32) + int(lo)
  return hi.astype(object) * (2**32) + lo.astype(object)
