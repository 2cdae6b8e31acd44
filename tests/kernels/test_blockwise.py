"""Blockwise top-k for every per-block k, against the reference."""

import jax
import jax.numpy as jnp
import pytest

from sparsejax.kernels import reference
from sparsejax.kernels import topk
from tests.kernels.conftest import KINDS, assert_same, make_input

fast = jax.jit(topk.blockwise_top_k_select, static_argnames=("k", "block_size"))
ref = jax.jit(reference.blockwise_top_k_select_reference,
              static_argnames=("k", "block_size"))


def _k_for(n, block, kb):
  """A k whose per-block k is ``kb`` (None if none is <= n)."""
  num_blocks = -(-n // block)
  k = (kb - 1) * num_blocks + 1
  return k if k <= n else None


def _check(n, block, kbs, kinds=KINDS):
  for kb in kbs:
    k = _k_for(n, block, kb)
    if k is None:
      continue
    assert reference.blockwise_layout(n, k, block)[1] == kb
    for kind in kinds:
      x = make_input(kind, n, jnp.float32, seed=kb)
      assert_same(fast(x, k, block), ref(x, k, block),
                  f"{kind} n={n} B={block} kb={kb}")


@pytest.mark.slow
@pytest.mark.parametrize("n,block", [(7 * 16, 16), (7 * 16 - 5, 16),
                                     (50, 7)])
def test_every_per_block_k(n, block):
  # All kb from 1 to the block size, full and ragged tail blocks.
  _check(n, block, range(1, block + 1), ("normal", "ties", "special"))


@pytest.mark.slow
@pytest.mark.parametrize("n,block,kbs", [
    (20 * 1024 + 77, 1024, (1, 2, 9, 11, 64, 100, 513, 1024)),
    (30 * 100 + 1, 100, (1, 9, 10, 99, 100)),
    (5 * 256, 256, (3, 12, 40, 255))])
def test_large_blocks(n, block, kbs):
  _check(n, block, kbs)


def test_no_lax_top_k_for_any_per_block_k():
  x = jnp.ones((4096,), jnp.float32)
  assert "top_k[" in str(jax.make_jaxpr(lambda v: ref(v, 4, 1024))(x))
  for kb in (1, 8, 9, 100, 1024):
    jaxpr = str(jax.make_jaxpr(lambda v, kb=kb: fast(v, kb * 4, 1024))(x))
    assert "top_k[" not in jaxpr, kb


@pytest.mark.slow
def test_tail_block_shorter_than_k_gets_sentinels():
  n, block = 1030, 512           # tail block: 6 real entries
  x = make_input("normal", n, jnp.float32)
  values, idx = fast(x, 3 * 10, block)
  assert_same((values, idx), ref(x, 3 * 10, block))
  tail = idx.reshape(3, 10)[2]
  assert (tail[:6] < n).all() and (tail[6:] == n).all()
  assert (values.reshape(3, 10)[2, 6:] == 0).all()
