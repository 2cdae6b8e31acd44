"""Wire-level messages: what a compressor really sends, and its exact size.

Every message is a pytree (arrays are leaves, layout is static aux data), so it
can cross ``jit``, ``vmap`` and collectives such as ``all_gather``. Each
message knows how to rebuild the dense update (:meth:`to_dense`) and how many
values and bits it costs (:meth:`size`). The bit formulas are the library's
accounting contract (see BUILD_NOTES.md, "Message format and bit counting"):

===================  ==========================================================
message              bits on the wire
===================  ==========================================================
DenseMessage         ``n * bits(dtype)``
SparseMessage        ``count * value_bits + index_bits (+ 32 if variable size)``
MaskedMessage        as SparseMessage (a threshold's message, held densely)
                     with ``index_bits = 32 * count`` ("int32"), ``n``
                     ("bitmap") or the smaller of the two ("auto")
SeededMessage        ``k * value_bits + 64`` (indices regenerated from the seed)
QuantizedMessage     ``32 + n * (ceil(log2(levels + 1)) + 1)``
SignMessage          ``n + 32``
===================  ==========================================================
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sparsejax.compress.bitcount import BitCount

INDEX_ENCODINGS = ("int32", "bitmap", "auto")


def dtype_bits(dtype) -> int:
  dtype = np.dtype(dtype)
  return 0 if dtype == jax.dtypes.float0 else 8 * dtype.itemsize


def _numel(shape) -> int:
  return int(np.prod(shape, dtype=np.int64))


@struct.dataclass
class DenseMessage:
  """The whole tensor, in the wire dtype of ``values``."""
  values: jax.Array
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  dtype: Any = struct.field(pytree_node=False)

  def to_dense(self) -> jax.Array:
    return self.values.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.values.shape)
    return (BitCount.of(n), BitCount.of(n, dtype_bits(self.values.dtype)))


@struct.dataclass
class SparseMessage:
  """``count`` (value, index) pairs in fixed-size buffers.

  ``indices`` index the flattened tensor; unused slots hold index ``n`` (the
  tensor size) and value 0. ``count`` may exceed the buffer (overflow of a
  threshold selection): only ``min(count, capacity)`` entries are sent.
  """
  values: jax.Array
  indices: jax.Array
  count: jax.Array
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  dtype: Any = struct.field(pytree_node=False)
  index_encoding: str = struct.field(pytree_node=False, default="int32")
  variable_size: bool = struct.field(pytree_node=False, default=False)

  @property
  def sent(self) -> jax.Array:
    return jnp.minimum(self.count, self.values.shape[0])

  def overflow(self) -> jax.Array:
    """Selected entries that did not fit the buffer (not sent)."""
    return self.count - self.sent

  def to_dense(self) -> jax.Array:
    flat = jnp.zeros((_numel(self.shape),), self.dtype)
    flat = flat.at[self.indices].set(self.values.astype(self.dtype), mode="drop")
    return flat.reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    return sparse_size(self.sent, _numel(self.shape),
                       dtype_bits(self.values.dtype), self.index_encoding,
                       self.variable_size)


@struct.dataclass
class MaskedMessage:
  """A sparse message held densely: the kept entries, zeros elsewhere.

  On the wire it is the same as a :class:`SparseMessage` with ``count``
  entries (same bits); in memory it skips the compaction, which is what a
  threshold with an unbounded buffer wants (dense decode, dense all-reduce).
  """
  values: jax.Array
  count: jax.Array
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  dtype: Any = struct.field(pytree_node=False)
  index_encoding: str = struct.field(pytree_node=False, default="int32")
  variable_size: bool = struct.field(pytree_node=False, default=True)

  def to_dense(self) -> jax.Array:
    return self.values.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    return sparse_size(self.count, _numel(self.shape),
                       dtype_bits(self.values.dtype), self.index_encoding,
                       self.variable_size)


def sparse_size(count, n: int, value_bits: int, index_encoding: str,
                variable_size: bool) -> tuple[BitCount, BitCount]:
  """(elements, bits) of ``count`` sparse values out of ``n``."""
  header = 32 if variable_size else 0
  with_indices = BitCount.of(count, value_bits + 32, header)
  if index_encoding == "int32":
    return BitCount.of(count), with_indices
  with_bitmap = BitCount.of(count, value_bits, header + n)
  if index_encoding == "bitmap":
    return BitCount.of(count), with_bitmap
  use_bitmap = jnp.asarray(count).astype(jnp.uint32) > np.uint32(n // 32)
  return BitCount.of(count), with_bitmap.select(use_bitmap, with_indices)


@struct.dataclass
class SeededMessage:
  """``k`` values at positions drawn from a key the receiver regenerates."""
  values: jax.Array
  key_data: jax.Array  # the raw PRNG key: 2 x uint32
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  dtype: Any = struct.field(pytree_node=False)

  def to_dense(self) -> jax.Array:
    n = _numel(self.shape)
    idx = random_indices(jax.random.wrap_key_data(self.key_data), n,
                         self.values.shape[0])
    flat = jnp.zeros((n,), self.dtype).at[idx].set(
        self.values.astype(self.dtype))
    return flat.reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    k = self.values.shape[0]
    key_bits = 32 * _numel(self.key_data.shape)
    return (BitCount.of(k),
            BitCount.of(k, dtype_bits(self.values.dtype), key_bits))


def random_indices(key: jax.Array, n: int, k: int) -> jax.Array:
  """``k`` distinct positions in ``[0, n)``, a pure function of ``key``."""
  return jax.random.choice(key, n, (k,), replace=False).astype(jnp.int32)


@struct.dataclass
class QuantizedMessage:
  """QSGD: ``x ~ norm * sign * level / levels`` with integer ``level``."""
  norm: jax.Array
  signed_levels: jax.Array  # int8/int16/int32, sign included
  levels: int = struct.field(pytree_node=False)
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  dtype: Any = struct.field(pytree_node=False)

  def to_dense(self) -> jax.Array:
    q = self.signed_levels.astype(jnp.float32) / self.levels
    return (self.norm * q).astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.signed_levels.shape)
    per = math.ceil(math.log2(self.levels + 1)) + 1
    return BitCount.of(n), BitCount.of(n, per, 32)


@struct.dataclass
class SignMessage:
  """Scaled sign: one bit per entry (0 sends +) and one fp32 scale."""
  negative: jax.Array  # bool
  scale: jax.Array
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  dtype: Any = struct.field(pytree_node=False)

  def to_dense(self) -> jax.Array:
    dense = jnp.where(self.negative, -self.scale, self.scale)
    return dense.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.negative.shape)
    return BitCount.of(n), BitCount.of(n, 1, 32)


@struct.dataclass
class FlatMessage:
  """A message over the concatenation of all float leaves of a pytree.

  Non-float leaves travel whole in ``passthrough``.
  """
  inner: Any
  passthrough: tuple
  treedef: Any = struct.field(pytree_node=False)
  layout: tuple = struct.field(pytree_node=False)  # (shape, dtype) or None

  def to_dense(self):
    flat = self.inner.to_dense()
    leaves, offset, rest = [], 0, iter(self.passthrough)
    for entry in self.layout:
      if entry is None:
        leaves.append(next(rest))
        continue
      shape, dtype = entry
      n = _numel(shape)
      leaves.append(flat[offset:offset + n].reshape(shape).astype(dtype))
      offset += n
    return jax.tree.unflatten(self.treedef, leaves)

  def size(self) -> tuple[BitCount, BitCount]:
    return message_size(
        [self.inner] + [DenseMessage(p, p.shape, p.dtype)
                        for p in self.passthrough])


@struct.dataclass
class GatedMessage:
  """``inner`` (a message or pytree of them) if ``sent``, else nothing.

  A message sent only in some rounds with a static structure: when ``sent``
  is False it costs 0 bits and decodes to zeros.
  """
  inner: Any
  sent: jax.Array  # bool

  def to_dense(self):
    return jax.tree.map(lambda d: jnp.where(self.sent, d, jnp.zeros_like(d)),
                        decode(self.inner))

  def size(self) -> tuple[BitCount, BitCount]:
    elements, bits = message_size(self.inner)
    zero = BitCount.zero()
    return elements.select(self.sent, zero), bits.select(self.sent, zero)


MESSAGE_TYPES = (DenseMessage, SparseMessage, MaskedMessage, SeededMessage,
                 QuantizedMessage, SignMessage, FlatMessage, GatedMessage)


def is_message(x) -> bool:
  return isinstance(x, MESSAGE_TYPES)


def decode(message: Any) -> Any:
  """The dense update a receiver rebuilds from a message (or pytree of them)."""
  return jax.tree.map(lambda m: m.to_dense(), message, is_leaf=is_message)


def _support(m):
  """A message that decodes to 1.0 where ``m`` sends a coordinate."""
  if isinstance(m, FlatMessage):
    return m.replace(inner=_support(m.inner))
  if isinstance(m, GatedMessage):
    return m.replace(inner=jax.tree.map(_support, m.inner, is_leaf=is_message))
  if isinstance(m, (SparseMessage, SeededMessage)):
    return m.replace(values=jnp.ones_like(m.values))
  if isinstance(m, MaskedMessage):  # a threshold's kept entries are nonzero
    return m.replace(values=(m.values != 0).astype(m.values.dtype))
  return DenseMessage(jnp.ones(m.shape, m.dtype), m.shape, m.dtype)


def message_support(message: Any) -> Any:
  """1.0 where the message sends a coordinate, else 0.0 (like ``decode``)."""
  return decode(jax.tree.map(_support, message, is_leaf=is_message))


def message_overflow(message: Any) -> jax.Array:
  """Selected entries left out for lack of buffer space, over all messages."""
  total = jnp.zeros((), jnp.int32)
  for m in jax.tree.leaves(message, is_leaf=is_message):
    m = m.inner if isinstance(m, FlatMessage) else m
    if isinstance(m, SparseMessage):
      total = total + m.overflow()
    if isinstance(m, GatedMessage):
      total = total + jnp.where(m.sent, message_overflow(m.inner), 0)
  return total


def message_size(message: Any) -> tuple[BitCount, BitCount]:
  """Total ``(elements, bits)`` of a message or pytree of messages."""
  elements, bits = BitCount.zero(), BitCount.zero()
  for m in jax.tree.leaves(message, is_leaf=is_message):
    e, b = m.size()
    elements, bits = elements + e, bits + b
  return elements, bits


def record_message(counters, message: Any, overflow=None):
  """``counters`` after sending ``message`` (its size; overflow by default
  :func:`message_overflow`)."""
  elements, bits = message_size(message)
  if overflow is None:
    overflow = message_overflow(message)
  return counters.record(elements, bits, overflow)
