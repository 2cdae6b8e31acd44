"""Bit packing of unsigned integers into ``uint32`` words, and back.

The wire format of the packed messages (:mod:`sparsejax.compress.messages`):
``n`` values of ``bits`` bits each are laid out little-endian, value ``i``
at bit offset ``i * bits`` of the stream, in ``ceil(n * bits / 32)`` words
(a value may straddle two words). The last word is padded with zero bits,
so a packed array moves at most 31 bits (under 4 bytes) more than
``n * bits``.

Shapes are static: the packing works on groups of ``32 / gcd(bits, 32)``
values (a whole number of words) with unrolled shifts, no scatter or gather.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

WORD_BITS = 32


def num_words(n: int, bits: int) -> int:
  """The number of ``uint32`` words holding ``n`` values of ``bits`` bits."""
  return -(-n * bits // WORD_BITS)


def _check_bits(bits) -> int:
  if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= WORD_BITS:
    raise ValueError(f"bits must be an int in [1, {WORD_BITS}], got {bits!r}")
  return int(bits)


def _group(bits: int) -> tuple[int, int]:
  """(values, words) of a group: the fewest values filling whole words."""
  g = math.gcd(bits, WORD_BITS)
  return WORD_BITS // g, bits // g


def _placements(bits: int):
  """Per value of a group: (word, shift, straddles into the next word)."""
  values, _ = _group(bits)
  for i in range(values):
    word, shift = divmod(i * bits, WORD_BITS)
    yield i, word, shift, shift + bits > WORD_BITS


def pack_bits(values: jax.Array, bits: int) -> jax.Array:
  """Packs the 1-D unsigned ``values`` (each below ``2**bits``) into words.

  Args:
    values: 1-D array of unsigned (or bool) values; only their low ``bits``
      bits are kept.
    bits: bits per value, in ``[1, 32]`` (static).

  Returns:
    ``uint32[ceil(n * bits / 32)]``, value ``i`` at bit offset ``i * bits``.
  """
  bits = _check_bits(bits)
  if values.ndim != 1:
    raise ValueError(f"values must be 1-D, got shape {values.shape}")
  n = values.shape[0]
  group, words_per_group = _group(bits)
  mask = np.uint32(2**bits - 1)
  v = values.astype(jnp.uint32) & mask
  v = jnp.pad(v, (0, -n % group)).reshape(-1, group)
  words = [jnp.zeros(v.shape[:1], jnp.uint32) for _ in range(words_per_group)]
  for i, word, shift, straddles in _placements(bits):
    words[word] = words[word] | (v[:, i] << np.uint32(shift))
    if straddles:
      words[word + 1] = words[word + 1] | (
          v[:, i] >> np.uint32(WORD_BITS - shift))
  return jnp.stack(words, axis=1).reshape(-1)[:num_words(n, bits)]


def unpack_bits(words: jax.Array, bits: int, n: int) -> jax.Array:
  """The ``n`` values of ``bits`` bits packed by :func:`pack_bits`, as uint32.

  Args:
    words: ``uint32[ceil(n * bits / 32)]``.
    bits: bits per value, in ``[1, 32]`` (static).
    n: the number of values (static).
  """
  bits = _check_bits(bits)
  if words.shape != (num_words(n, bits),) or words.dtype != jnp.uint32:
    raise ValueError(
        f"words must be uint32[{num_words(n, bits)}] for {n} values of {bits} "
        f"bits, got {words.dtype}{list(words.shape)}")
  group, words_per_group = _group(bits)
  groups = -(-n // group)
  w = jnp.pad(words, (0, groups * words_per_group - words.shape[0]))
  w = w.reshape(groups, words_per_group)
  mask = np.uint32(2**bits - 1)
  columns = []
  for _, word, shift, straddles in _placements(bits):
    value = w[:, word] >> np.uint32(shift)
    if straddles:
      value = value | (w[:, word + 1] << np.uint32(WORD_BITS - shift))
    columns.append(value & mask)
  return jnp.stack(columns, axis=1).reshape(-1)[:n]


def signed_bits(max_magnitude: int) -> int:
  """Bits of a sign-magnitude integer in ``[-max_magnitude, max_magnitude]``."""
  return math.ceil(math.log2(max_magnitude + 1)) + 1


def pack_signed(values: jax.Array, max_magnitude: int) -> jax.Array:
  """Packs integers in ``[-max_magnitude, max_magnitude]`` as sign and
  magnitude (the sign in the top bit), :func:`signed_bits` bits each."""
  bits = signed_bits(max_magnitude)
  negative = (values < 0).astype(jnp.uint32) << np.uint32(bits - 1)
  return pack_bits(negative | jnp.abs(values).astype(jnp.uint32), bits)


def unpack_signed(words: jax.Array, max_magnitude: int, n: int,
                  dtype) -> jax.Array:
  """The ``n`` integers packed by :func:`pack_signed`, in ``dtype``."""
  bits = signed_bits(max_magnitude)
  v = unpack_bits(words, bits, n)
  magnitude = (v & np.uint32(2**(bits - 1) - 1)).astype(dtype)
  return jnp.where(v >> np.uint32(bits - 1) == 1, -magnitude, magnitude)


def pack_mask(mask: jax.Array) -> jax.Array:
  """A bool array (any shape) as 1 bit per entry, in flat order."""
  return pack_bits(mask.reshape(-1), 1)


def unpack_mask(words: jax.Array, shape) -> jax.Array:
  """The bool array of ``shape`` packed by :func:`pack_mask`."""
  n = math.prod(shape)
  return unpack_bits(words, 1, n).astype(jnp.bool_).reshape(shape)
