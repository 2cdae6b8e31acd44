"""Bit packing against a NumPy bit-stream reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.compress import packing


def _reference_pack(values, bits):
  """Little-endian bit stream of ``values`` (``bits`` each) in uint32 words."""
  stream = ((values[:, None].astype(np.uint64) >> np.arange(bits,
                                                            dtype=np.uint64))
            & 1).reshape(-1)
  stream = np.pad(stream, (0, -len(stream) % 32)).reshape(-1, 32)
  return (stream << np.arange(32, dtype=np.uint64)).sum(axis=1).astype(
      np.uint32)


@pytest.mark.slow
@pytest.mark.parametrize("bits", list(range(1, 17)) + [26, 32])
@pytest.mark.parametrize("n", [1, 33, 517])
def test_pack_matches_numpy_and_roundtrips(bits, n):
  rng = np.random.default_rng(bits * 1000 + n)
  values = rng.integers(0, 2**bits, n, dtype=np.uint64).astype(np.uint32)
  words = jax.jit(packing.pack_bits, static_argnums=1)(values, bits)
  assert words.dtype == jnp.uint32
  assert words.shape == (packing.num_words(n, bits),)
  np.testing.assert_array_equal(words, _reference_pack(values, bits))
  back = jax.jit(packing.unpack_bits, static_argnums=(1, 2))(words, bits, n)
  np.testing.assert_array_equal(back, values)


@pytest.mark.slow
def test_pack_keeps_only_the_low_bits():
  words = packing.pack_bits(jnp.array([0xFF, 0x1], jnp.uint32), 3)
  np.testing.assert_array_equal(packing.unpack_bits(words, 3, 2), [7, 1])


@pytest.mark.slow
@pytest.mark.parametrize("max_magnitude", [1, 4, 127, 255, 2**15 - 1])
def test_signed_roundtrip(max_magnitude):
  rng = np.random.default_rng(max_magnitude)
  values = rng.integers(-max_magnitude, max_magnitude + 1, 301).astype(
      np.int32)
  words = packing.pack_signed(jnp.asarray(values), max_magnitude)
  bits = packing.signed_bits(max_magnitude)
  assert words.shape == (packing.num_words(301, bits),)
  back = packing.unpack_signed(words, max_magnitude, 301, jnp.int32)
  np.testing.assert_array_equal(back, values)


@pytest.mark.slow
def test_mask_roundtrip():
  mask = np.random.default_rng(0).random((7, 9)) < 0.5
  words = packing.pack_mask(jnp.asarray(mask))
  assert words.shape == (2,)
  np.testing.assert_array_equal(packing.unpack_mask(words, (7, 9)), mask)


@pytest.mark.parametrize("bits", [0, 33, 2.0])
def test_rejects_bad_widths(bits):
  with pytest.raises(ValueError, match="bits must be an int in"):
    packing.pack_bits(jnp.zeros(4, jnp.uint32), bits)


def test_unpack_rejects_wrong_word_count():
  with pytest.raises(ValueError, match=r"uint32\[3\]"):
    packing.unpack_bits(jnp.zeros(2, jnp.uint32), 2, 40)
