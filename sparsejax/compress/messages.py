"""Wire-level messages: what a compressor really sends, and its exact size.

Every message is a pytree (arrays are leaves, layout is static aux data), so it
can cross ``jit``, ``vmap`` and collectives such as ``all_gather``. Every
message type is a :class:`Message` and answers for itself; nothing outside
this module asks which type a message is:

* :meth:`~Message.to_dense`: the dense update a receiver rebuilds;
* :meth:`~Message.size`: ``(elements, bits)`` on the wire;
* :meth:`~Message.support`: 1.0 where a coordinate is sent, 0.0 elsewhere;
* :meth:`~Message.overflow`: selected entries left out for lack of buffer;
* :meth:`~Message.wire`: the arrays the collectives move, packed to the
  counted bits (:mod:`sparsejax.compress.packing`), and
  :meth:`~Message.from_wire`, the message rebuilt from them;
* :meth:`~Message.mean`: the mean of the dense updates over a mesh axis (the
  collectives used, and the bytes they move, are listed in
  :mod:`sparsejax.parallel.collectives`).

:func:`sparsejax.decode`, :func:`sparsejax.compress.message_size`,
:func:`sparsejax.compress.message_support`,
:func:`sparsejax.compress.message_overflow` and
:func:`sparsejax.compress.mean_over_axis` apply them to a pytree of messages.
The bit formulas are the library's accounting contract (see
BUILD_NOTES.md, "Message format and bit counting"):

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
TwoValueMessage      ``n + 64``
PowerOfTwoMessage    ``9 * n`` (sign and 8-bit exponent per entry)
===================  ==========================================================
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.compress import packing
from sparsejax.compress.bitcount import BitCount

INDEX_ENCODINGS = ("int32", "bitmap", "auto")


def dtype_bits(dtype) -> int:
  dtype = np.dtype(dtype)
  return 0 if dtype == jax.dtypes.float0 else 8 * dtype.itemsize


def _numel(shape) -> int:
  return int(np.prod(shape, dtype=np.int64))


def static_field(**kwargs):
  """A message field that is layout (static pytree aux data), not an array."""
  return dataclasses.field(metadata={"static": True}, **kwargs)


def message_type(cls):
  """Makes a :class:`Message` subclass a frozen dataclass and a pytree.

  Fields made with :func:`static_field` are static aux data, the others are
  children.
  """
  cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
  return jax.tree_util.register_dataclass(cls)


class Message(abc.ABC):
  """A wire message; subclasses are declared with :func:`message_type`."""

  def replace(self, **changes) -> "Message":
    """A copy with the given fields replaced."""
    return dataclasses.replace(self, **changes)

  @abc.abstractmethod
  def to_dense(self) -> Any:
    """The dense update this message encodes (in the update's dtype)."""

  @abc.abstractmethod
  def size(self) -> tuple[BitCount, BitCount]:
    """``(elements, bits)`` on the wire."""

  def support(self) -> Any:
    """1.0 where a coordinate is sent, else 0.0, shaped like :meth:`to_dense`.

    By default every coordinate is sent.
    """
    return jax.tree.map(jnp.ones_like, self.to_dense())

  def overflow(self) -> BitCount:
    """Selected entries not sent for lack of buffer space (0 by default)."""
    return BitCount.zero()

  def exchanged_over(self) -> Any:
    """The mesh axis whose devices already exchanged values while encoding
    this message (PowerSGD's factors, a majority vote), else ``None``.

    Such a message holds what it received, so :meth:`mean` needs no further
    collective; whoever drops it (error feedback on a non-finite step) must
    drop it on every device of that axis alike (:func:`exchanged_axes`).
    """
    return None

  def wire(self) -> Any:
    """The arrays the collectives move for this message (a pytree).

    By default the message's own arrays in their wire dtypes; the bit-level
    messages override it with their packed ``uint32`` words.
    """
    return self

  def from_wire(self, wire) -> "Message":
    """The message :meth:`wire` was taken from (its layout from ``self``)."""
    return wire

  def mean(self, axis_name, sparse_crossover: bool = True) -> Any:
    """The mean over ``axis_name`` of the dense updates of every device.

    By default an all-gather of :meth:`wire`, rebuilt, decoded and averaged
    on every device.
    """
    del sparse_crossover
    gathered = jax.lax.all_gather(self.wire(), axis_name)
    dense = jax.vmap(lambda w: decode(self.from_wire(w)))(gathered)
    return jax.tree.map(lambda d: jnp.mean(d, axis=0).astype(d.dtype), dense)


@message_type
class DenseMessage(Message):
  """The whole tensor, in the wire dtype of ``values``."""
  values: jax.Array
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()

  def to_dense(self) -> jax.Array:
    return self.values.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.values.shape)
    return (BitCount.of(n), BitCount.of(n, dtype_bits(self.values.dtype)))

  def mean(self, axis_name, sparse_crossover: bool = True) -> jax.Array:
    """Full precision: one ``pmean``; a cast: gathered in its wire dtype."""
    if self.values.dtype != self.dtype:
      return super().mean(axis_name, sparse_crossover)
    return jax.lax.pmean(self.to_dense(), axis_name)


@message_type
class SparseMessage(Message):
  """``count`` (value, index) pairs in fixed-size buffers.

  ``indices`` index the flattened tensor; unused slots hold index ``n`` (the
  tensor size) and value 0. ``count`` may exceed the buffer (overflow of a
  threshold selection): only ``min(count, capacity)`` entries are sent.
  """
  values: jax.Array
  indices: jax.Array
  count: jax.Array
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()
  index_encoding: str = static_field(default="int32")
  variable_size: bool = static_field(default=False)

  @property
  def sent(self) -> jax.Array:
    return jnp.minimum(self.count, self.values.shape[0])

  def to_dense(self) -> jax.Array:
    flat = jnp.zeros((_numel(self.shape),), self.dtype)
    flat = flat.at[self.indices].set(self.values.astype(self.dtype), mode="drop")
    return flat.reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    return sparse_size(self.sent, _numel(self.shape),
                       dtype_bits(self.values.dtype), self.index_encoding,
                       self.variable_size)

  def support(self) -> jax.Array:
    """1.0 at the sent indices (a sent zero counts)."""
    return self.replace(values=jnp.ones_like(self.values)).to_dense()

  def overflow(self) -> BitCount:
    return BitCount.of(self.count - self.sent)

  def uses_bitmap(self) -> bool:
    """Whether the buffer travels as an ``n``-bit bitmap instead of int32
    indices: ``index_encoding="bitmap"``, or ``"auto"`` and a capacity above
    ``n / 32`` (static: the rule of :func:`sparse_size` at full buffer)."""
    capacity, n = self.values.shape[0], _numel(self.shape)
    return (self.index_encoding == "bitmap"
            or (self.index_encoding == "auto" and capacity > n // 32))

  def mean(self, axis_name, sparse_crossover: bool = True) -> jax.Array:
    """Below the crossover ``capacity / n < 1 / P`` an all-gather of the
    buffers (values, and int32 indices or a packed bitmap; the count of a
    variable-size message), decoded on every device; above it (unless
    ``sparse_crossover=False``) a ``psum`` of the decoded message."""
    num = jax.lax.axis_size(axis_name)
    n = _numel(self.shape)
    if sparse_crossover and self.values.shape[0] * num >= n:
      return jax.lax.psum(self.to_dense(), axis_name) / num
    # A variable-size message sends its count; the receiver reads only the
    # slots below it (the unused slots hold index n and value 0 anyway).
    header = self.count if self.variable_size else None
    if self.uses_bitmap():
      order = jnp.argsort(self.indices)  # values in index order; unused last
      bitmap = jnp.zeros((n,), jnp.bool_).at[self.indices].set(
          True, mode="drop")
      values, words, counts = jax.lax.all_gather(
          (self.values[order], packing.pack_mask(bitmap), header), axis_name)
      flat = jnp.sum(jax.vmap(self._from_bitmap)(
          self._used(values, counts), words), axis=0)
    else:
      values, indices, counts = jax.lax.all_gather(
          (self.values, self.indices, header), axis_name)
      flat = jnp.zeros((n,), self.dtype).at[indices.reshape(-1)].add(
          self._used(values, counts).reshape(-1).astype(self.dtype),
          mode="drop")
    return (flat / num).reshape(self.shape)

  @staticmethod
  def _used(values, counts) -> jax.Array:
    """``values[p, s]`` for slots ``s < counts[p]``, 0 beyond (all of them
    without counts)."""
    if counts is None:
      return values
    slots = jnp.arange(values.shape[1])
    return jnp.where(slots < counts[:, None], values, 0)

  def _from_bitmap(self, values, words) -> jax.Array:
    """The flat dense update from values in index order and their bitmap."""
    sent = packing.unpack_mask(words, (_numel(self.shape),))
    slot = jnp.clip(jnp.cumsum(sent, dtype=jnp.int32) - 1, 0,
                    values.shape[0] - 1)
    return jnp.where(sent, values[slot].astype(self.dtype), 0)


@message_type
class MaskedMessage(Message):
  """A sparse message held densely: the kept entries, zeros elsewhere.

  On the wire it is the same as a :class:`SparseMessage` with ``count``
  entries (same bits); in memory it skips the compaction, which is what a
  threshold with an unbounded buffer wants (dense decode, dense all-reduce).
  """
  values: jax.Array
  count: jax.Array
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()
  index_encoding: str = static_field(default="int32")
  variable_size: bool = static_field(default=True)

  def to_dense(self) -> jax.Array:
    return self.values.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    return sparse_size(self.count, _numel(self.shape),
                       dtype_bits(self.values.dtype), self.index_encoding,
                       self.variable_size)

  def support(self) -> jax.Array:
    """1.0 at the nonzero entries (a threshold's kept entries are nonzero)."""
    return self.replace(
        values=(self.values != 0).astype(self.values.dtype)).to_dense()

  def mean(self, axis_name, sparse_crossover: bool = True) -> jax.Array:
    """An all-gather of the counts (the 32-bit headers), then, with ``c``
    the largest count on the axis: the nonzero entries compacted into a
    :class:`SparseMessage` buffer of the smallest capacity of
    :func:`wire_capacities` that holds ``c`` (``c`` or more, under ``2 c``
    unless below the smallest), gathered; or, when no capacity below the
    crossover holds ``c``, a ``pmean`` of the dense tensor (fewer bytes).
    Never truncates: a count over every buffer takes the dense path."""
    n = _numel(self.shape)
    counts = jax.lax.all_gather(self.count, axis_name)
    capacities = wire_capacities(n, jax.lax.axis_size(axis_name),
                                 sparse_crossover)
    dense = lambda: jax.lax.pmean(self.to_dense(), axis_name)
    if not capacities:
      return dense()
    return jax.lax.switch(
        wire_branch(jnp.max(counts), capacities),
        [dense] + [functools.partial(self._sparse_mean, c, axis_name)
                   for c in capacities])

  def _sparse_mean(self, capacity: int, axis_name) -> jax.Array:
    """The mean as a gather of buffers of ``capacity`` (count sent already)."""
    n = _numel(self.shape)
    flat = self.values.reshape(-1)
    indices = jnp.nonzero(flat != 0, size=capacity, fill_value=n)[0].astype(
        jnp.int32)
    values = flat.at[indices].get(mode="fill", fill_value=0)
    sparse = SparseMessage(values, indices, self.count, self.shape, self.dtype,
                           self.index_encoding, variable_size=False)
    return sparse.mean(axis_name, sparse_crossover=False)


WIRE_CAPACITY_STEPS = 12


def wire_capacities(n: int, num_devices: int,
                    sparse_crossover: bool = True) -> tuple[int, ...]:
  """The static buffer sizes a :class:`MaskedMessage` of ``n`` entries can
  travel in over ``num_devices``: ``c_0`` the largest below the crossover
  (``c_0 * P < n``; ``n`` with ``sparse_crossover=False``), halved
  ``WIRE_CAPACITY_STEPS - 1`` times at most, down to 1."""
  top = n if not sparse_crossover else -(-n // num_devices) - 1
  return tuple(top >> j for j in range(WIRE_CAPACITY_STEPS) if top >> j)


def wire_branch(count, capacities: tuple[int, ...]) -> jax.Array:
  """0 if ``count`` exceeds every capacity (descending), else ``i + 1`` for
  the smallest ``capacities[i]`` that holds it."""
  return sum((count <= c).astype(jnp.int32) for c in capacities)


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


@message_type
class SeededMessage(Message):
  """``k`` values at positions drawn from a key the receiver regenerates."""
  values: jax.Array
  key_data: jax.Array  # the raw PRNG key: 2 x uint32
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()

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

  def support(self) -> jax.Array:
    """1.0 at the ``k`` drawn positions."""
    return self.replace(values=jnp.ones_like(self.values)).to_dense()


def random_indices(key: jax.Array, n: int, k: int) -> jax.Array:
  """``k`` distinct positions in ``[0, n)``, a pure function of ``key``."""
  return jax.random.choice(key, n, (k,), replace=False).astype(jnp.int32)


@message_type
class QuantizedMessage(Message):
  """QSGD: ``x ~ norm * sign * level / levels`` with integer ``level``."""
  norm: jax.Array
  signed_levels: jax.Array  # int8/int16/int32, sign included
  levels: int = static_field()
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()

  def to_dense(self) -> jax.Array:
    q = self.signed_levels.astype(jnp.float32) / self.levels
    return (self.norm * q).astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.signed_levels.shape)
    return BitCount.of(n), BitCount.of(n, packing.signed_bits(self.levels), 32)

  def wire(self) -> tuple[jax.Array, jax.Array]:
    """The norm and the levels packed in sign-magnitude, ``ceil(log2(levels
    + 1)) + 1`` bits each."""
    return self.norm, packing.pack_signed(self.signed_levels.reshape(-1),
                                          self.levels)

  def from_wire(self, wire) -> "QuantizedMessage":
    norm, words = wire
    levels = packing.unpack_signed(words, self.levels, self.signed_levels.size,
                                   self.signed_levels.dtype)
    return self.replace(norm=norm,
                        signed_levels=levels.reshape(self.signed_levels.shape))


@message_type
class SignMessage(Message):
  """Scaled sign: one bit per entry (0 sends +) and one fp32 scale."""
  negative: jax.Array  # bool
  scale: jax.Array
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()

  def to_dense(self) -> jax.Array:
    dense = jnp.where(self.negative, -self.scale, self.scale)
    return dense.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.negative.shape)
    return BitCount.of(n), BitCount.of(n, 1, 32)

  def wire(self) -> tuple[jax.Array, jax.Array]:
    """The signs packed 32 to a word, and the scale."""
    return packing.pack_mask(self.negative), self.scale

  def from_wire(self, wire) -> "SignMessage":
    words, scale = wire
    return self.replace(
        negative=packing.unpack_mask(words, self.negative.shape), scale=scale)


@message_type
class TwoValueMessage(Message):
  """One bit per entry choosing one of two fp32 values (1-bit SGD)."""
  high: jax.Array  # bool: the entry is sent as ``high_value``
  high_value: jax.Array
  low_value: jax.Array
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()

  def to_dense(self) -> jax.Array:
    dense = jnp.where(self.high, self.high_value, self.low_value)
    return dense.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.high.shape)
    return BitCount.of(n), BitCount.of(n, 1, 64)

  def wire(self) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The choices packed 32 to a word, and the two values."""
    return packing.pack_mask(self.high), self.high_value, self.low_value

  def from_wire(self, wire) -> "TwoValueMessage":
    words, high_value, low_value = wire
    return self.replace(high=packing.unpack_mask(words, self.high.shape),
                        high_value=high_value, low_value=low_value)


@message_type
class PowerOfTwoMessage(Message):
  """Signed powers of two: a sign bit and an 8-bit exponent per entry.

  ``exponent`` is the biased exponent of float32 (uint8): ``E`` in
  ``[1, 254]`` sends ``2**(E - 127)``, 0 sends zero and 255 infinity.
  """
  negative: jax.Array  # bool
  exponent: jax.Array  # uint8
  shape: tuple[int, ...] = static_field()
  dtype: Any = static_field()

  def to_dense(self) -> jax.Array:
    bits = ((self.negative.astype(jnp.uint32) << 31)
            | (self.exponent.astype(jnp.uint32) << 23))
    dense = jax.lax.bitcast_convert_type(bits, jnp.float32)
    return dense.astype(self.dtype).reshape(self.shape)

  def size(self) -> tuple[BitCount, BitCount]:
    n = _numel(self.exponent.shape)
    return BitCount.of(n), BitCount.of(n, 9)

  def wire(self) -> jax.Array:
    """Sign (bit 8) and exponent (bits 0-7) packed 9 bits per entry."""
    entries = ((self.negative.astype(jnp.uint32) << 8)
               | self.exponent.astype(jnp.uint32))
    return packing.pack_bits(entries.reshape(-1), 9)

  def from_wire(self, wire) -> "PowerOfTwoMessage":
    entries = packing.unpack_bits(wire, 9, self.exponent.size).reshape(
        self.exponent.shape)
    return self.replace(negative=entries >> 8 == 1,
                        exponent=(entries & 0xFF).astype(self.exponent.dtype))


@message_type
class FlatMessage(Message):
  """A message over the concatenation of all float leaves of a pytree.

  Non-float leaves travel whole in ``passthrough``.
  """
  inner: Any
  passthrough: tuple
  treedef: Any = static_field()
  layout: tuple = static_field()  # (shape, dtype) per leaf, None if passed

  def _unflatten(self, flat, passthrough):
    """The pytree of the float leaves in ``flat`` and ``passthrough``."""
    leaves, offset, rest = [], 0, iter(passthrough)
    for entry in self.layout:
      if entry is None:
        leaves.append(next(rest))
        continue
      shape, dtype = entry
      n = _numel(shape)
      leaves.append(flat[offset:offset + n].reshape(shape).astype(dtype))
      offset += n
    return jax.tree.unflatten(self.treedef, leaves)

  def to_dense(self):
    return self._unflatten(self.inner.to_dense(), self.passthrough)

  def size(self) -> tuple[BitCount, BitCount]:
    return message_size(
        [self.inner] + [DenseMessage(p, p.shape, p.dtype)
                        for p in self.passthrough])

  def support(self):
    """The inner message's support; passed-through leaves are sent whole."""
    return self._unflatten(self.inner.support(),
                           [jnp.ones_like(p) for p in self.passthrough])

  def overflow(self) -> BitCount:
    return self.inner.overflow()

  def mean(self, axis_name, sparse_crossover: bool = True):
    """The inner message's mean; passed-through leaves are this device's."""
    return self._unflatten(self.inner.mean(axis_name, sparse_crossover),
                           self.passthrough)


@message_type
class GatedMessage(Message):
  """``inner`` (a message or pytree of them) if ``sent``, else nothing.

  A message sent only in some rounds with a static structure: when ``sent``
  is False it costs 0 bits and decodes to zeros.
  """
  inner: Any
  sent: jax.Array  # bool

  def _gate(self, tree):
    return jax.tree.map(lambda d: jnp.where(self.sent, d, jnp.zeros_like(d)),
                        tree)

  def to_dense(self):
    return self._gate(decode(self.inner))

  def size(self) -> tuple[BitCount, BitCount]:
    elements, bits = message_size(self.inner)
    return elements.masked(self.sent), bits.masked(self.sent)

  def support(self):
    return self._gate(message_support(self.inner))

  def overflow(self) -> BitCount:
    return message_overflow(self.inner).masked(self.sent)

  def wire(self) -> tuple[Any, jax.Array]:
    """The inner messages' wire arrays (moved even when not ``sent``: the
    shapes are static) and ``sent``."""
    return (jax.tree.map(lambda m: m.wire(), self.inner, is_leaf=is_message),
            self.sent)

  def from_wire(self, wire) -> "GatedMessage":
    inner, sent = wire
    return self.replace(inner=jax.tree.map(lambda m, w: m.from_wire(w),
                                           self.inner, inner,
                                           is_leaf=is_message), sent=sent)


def is_message(x) -> bool:
  return isinstance(x, Message)


def _messages(message: Any) -> list:
  return jax.tree.leaves(message, is_leaf=is_message)


def decode(message: Any) -> Any:
  """The dense update a receiver rebuilds from a message (or pytree of them)."""
  return jax.tree.map(lambda m: m.to_dense(), message, is_leaf=is_message)


def message_support(message: Any) -> Any:
  """1.0 where the message sends a coordinate, else 0.0 (like ``decode``)."""
  return jax.tree.map(lambda m: m.support(), message, is_leaf=is_message)


def message_overflow(message: Any) -> BitCount:
  """Selected entries left out for lack of buffer space, over all messages."""
  return BitCount.sum(m.overflow() for m in _messages(message))


def check_exchanged_over(message: Message, axis_name, factory: str) -> None:
  """Refuses to aggregate ``message`` over an axis other than the one its
  values were exchanged over while encoding (``factory``: the compressor to
  pass ``axis_name=`` to)."""
  built = message.exchanged_over()
  if built is None or axis_name != built:
    raise ValueError(
        f"a {factory} message can only be aggregated over the mesh axis its "
        f"values were exchanged over while encoding (built with axis_name="
        f"{built!r}, aggregated over {axis_name!r}): pass "
        f"axis_name={axis_name!r} to sj.{factory}")


def exchanged_axes(message: Any) -> tuple:
  """The mesh axes the messages in ``message`` were exchanged over while
  encoding (:meth:`Message.exchanged_over`), each once."""
  axes = (m.exchanged_over() for m in _messages(message))
  return tuple(dict.fromkeys(a for a in axes if a is not None))


def message_size(message: Any) -> tuple[BitCount, BitCount]:
  """Total ``(elements, bits)`` of a message or pytree of messages."""
  sizes = [m.size() for m in _messages(message)]
  return (BitCount.sum(e for e, _ in sizes), BitCount.sum(b for _, b in sizes))


def mean_over_axis(message: Any, axis_name, *, sparse_crossover: bool = True):
  """The mean over ``axis_name`` of the dense updates the messages encode.

  Call it inside ``shard_map`` (or any context binding ``axis_name``); each
  message type picks its collective
  (:meth:`sparsejax.compress.Message.mean`).
  """
  return jax.tree.map(lambda m: m.mean(axis_name, sparse_crossover), message,
                      is_leaf=is_message)
