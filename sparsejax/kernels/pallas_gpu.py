"""Pallas (Triton) kernels for the counting and compaction passes on GPU.

Two kernels over a flat int32 key vector cut into blocks of ``block``:

* ``block_counts_ge``: per block, how many keys are ``>=`` each of ``T``
  thresholds (one read of the keys for ``T`` thresholds). The k-th largest key
  is then found by a radix search of 4 bits per pass (8 passes, 16 thresholds
  each) instead of 32 one-threshold passes.
* ``compact``: the selection ``key > t_gt or (key == t_eq and pos <= p)`` is
  written in index order into a fixed-size buffer: block counts from the first
  kernel, their exclusive prefix sum (XLA, short) gives each block its output
  offset, and each program computes the in-block exclusive prefix sum of its
  mask and scatters the global positions (masked store, no atomics).

Keys are int32 (uint32 order keys with the top bit flipped, so signed compare
is the unsigned order). Shapes and block sizes are static; every kernel runs
with ``interpret=True`` on CPU, which is how the tests check them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from sparsejax.kernels import _common as c

BLOCK = 1024
DIGIT_BITS = 4
# Set to False to keep the XLA formulation on GPU as well.
ENABLED = True


def default_config() -> dict | None:
  """Pallas settings for the public kernels: on GPU only (else None = XLA)."""
  if ENABLED and jax.default_backend() == "gpu":
    return {"block": BLOCK, "interpret": False}
  return None
_SIGN = 0x80000000


def to_signed(key_u32: jax.Array) -> jax.Array:
  """uint32 order key -> int32 with the same order under signed compare."""
  return lax.bitcast_convert_type(key_u32 ^ jnp.uint32(_SIGN), jnp.int32)


def _next_pow2(v: int) -> int:
  return 1 << max(0, (v - 1).bit_length())


def _counts_kernel(key_ref, thr_ref, out_ref):
  key = key_ref[...]
  thr = thr_ref[...]
  ge = (key[None, :] >= thr[:, None]).astype(jnp.int32)
  out_ref[...] = jnp.sum(ge, axis=1)[None, :]


@functools.partial(jax.jit, static_argnames=("block", "interpret"))
def block_counts_ge(key: jax.Array, thresholds: jax.Array, *,
                    block: int = BLOCK, interpret: bool = False):
  """``(num_blocks, T)`` counts of ``key >= thresholds[t]`` per block.

  ``key``: int32, length a multiple of ``block``; ``thresholds``: int32 ``(T,)``
  with ``T`` a power of two.
  """
  nb = key.shape[0] // block
  t = thresholds.shape[0]
  return pl.pallas_call(
      _counts_kernel,
      grid=(nb,),
      in_specs=[pl.BlockSpec((block,), lambda i: (i,)),
                pl.BlockSpec((t,), lambda i: (0,))],
      out_specs=pl.BlockSpec((1, t), lambda i: (i, 0)),
      out_shape=jax.ShapeDtypeStruct((nb, t), jnp.int32),
      interpret=interpret,
  )(key, thresholds)


def kth_largest(key_u32: jax.Array, k, *, block: int = BLOCK,
                interpret: bool = False) -> jax.Array:
  """The k-th largest of a uint32 key vector (length a multiple of block)."""
  keyi = to_signed(key_u32)
  digits = jnp.arange(1 << DIGIT_BITS, dtype=jnp.uint32)
  v = jnp.uint32(0)
  for shift in range(32 - DIGIT_BITS, -1, -DIGIT_BITS):
    cand = v | (digits << shift)
    counts = block_counts_ge(keyi, to_signed(cand), block=block,
                             interpret=interpret).sum(axis=0)
    best = jnp.sum(counts >= k).astype(jnp.uint32) - 1  # counts[0] >= k
    v = v | (best << shift)
  return v


def _compact_kernel(key_ref, par_ref, off_ref, init_ref, out_ref, *, block,
                    size):
  del init_ref  # aliased to out_ref: slots not written keep the sentinel
  i = pl.program_id(0)
  key = key_ref[...]
  t_gt, t_eq, last = par_ref[0], par_ref[1], par_ref[2]
  pos = i * block + jnp.arange(block, dtype=jnp.int32)
  sel = (key > t_gt) | ((key == t_eq) & (pos <= last))
  ones = sel.astype(jnp.int32)
  dst = off_ref[0] + jnp.cumsum(ones) - ones
  ok = sel & (dst < size)
  # Masked-off lanes get distinct scratch slots past ``size`` (never read).
  lane = jnp.arange(block, dtype=jnp.int32)
  plgpu.store(out_ref.at[jnp.where(ok, dst, size + lane)], pos, mask=ok)


@functools.partial(jax.jit, static_argnames=("size", "block", "interpret"))
def compact(keyi: jax.Array, t_gt, t_eq, last, size: int, *,
            block: int = BLOCK, interpret: bool = False):
  """Positions of ``key > t_gt or (key == t_eq and pos <= last)``, in order.

  ``keyi`` int32 (see :func:`to_signed`), length a multiple of ``block``;
  thresholds are int32 scalars in the same signed space. Returns
  ``(positions[size], valid[size], count)``; invalid slots hold ``-1``.
  """
  n = keyi.shape[0]
  nb = n // block
  t_gt = jnp.asarray(t_gt, jnp.int32)
  t_eq = jnp.asarray(t_eq, jnp.int32)
  last = jnp.asarray(last, jnp.int32)
  pos = jnp.arange(n, dtype=jnp.int32).reshape(nb, block)
  # Block counts: XLA row sums (one fused read); offsets by a short cumsum.
  key2d = keyi.reshape(nb, block)
  sel = (key2d > t_gt) | ((key2d == t_eq) & (pos <= last))
  counts = jnp.sum(sel, axis=1, dtype=jnp.int32)
  offsets = jnp.cumsum(counts) - counts
  count = jnp.sum(counts)
  padded = _next_pow2(size + block)
  init = jnp.full((padded,), -1, jnp.int32)
  params = jnp.stack([t_gt, t_eq, last, jnp.int32(0)])
  out = pl.pallas_call(
      functools.partial(_compact_kernel, block=block, size=size),
      grid=(nb,),
      in_specs=[pl.BlockSpec((block,), lambda i: (i,)),
                pl.BlockSpec((4,), lambda i: (0,)),
                pl.BlockSpec((1,), lambda i: (i,)),
                pl.BlockSpec((padded,), lambda i: (0,))],
      out_specs=pl.BlockSpec((padded,), lambda i: (0,)),
      out_shape=jax.ShapeDtypeStruct((padded,), jnp.int32),
      input_output_aliases={3: 0},
      interpret=interpret,
  )(keyi, params, offsets, init)[:size]
  return out, jnp.arange(size) < count, count


def top_positions(key_u32: jax.Array, k: int, *, block: int = BLOCK,
                  interpret: bool = False) -> jax.Array:
  """Pallas twin of :func:`_common.top_positions` (length multiple of block)."""
  t = kth_largest(key_u32, k, block=block, interpret=interpret)
  eq_bits = c.row_bits((key_u32 == t).reshape(-1, c.ROW))
  gt_count = jnp.sum(key_u32 > t, dtype=jnp.int32)
  last, _, _ = c.locate_bits(eq_bits, (k - gt_count - 1)[None])
  ts = to_signed(t)
  pos, _, _ = compact(to_signed(key_u32), ts, ts, last[0], k, block=block,
                      interpret=interpret)
  return pos


def threshold_positions(key_u32: jax.Array, t_key, size: int, *,
                        block: int = BLOCK, interpret: bool = False):
  """Positions of ``key >= t_key`` (uint32, may be traced), first ``size``."""
  big = jnp.int32(2 ** 31 - 1)
  t_gt = jnp.where(t_key == 0, jnp.int32(-2 ** 31),
                   to_signed(jnp.asarray(t_key, jnp.uint32) - 1))
  # t_key == 0 selects everything: key > INT_MIN misses only key 0 (padding).
  return compact(to_signed(key_u32), t_gt, big, jnp.int32(-1), size,
                 block=block, interpret=interpret)
