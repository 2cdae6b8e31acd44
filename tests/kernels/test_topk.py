"""Exact top-k and blockwise top-k against their references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import kernels
from sparsejax.kernels import reference
from sparsejax.kernels import topk
from tests.kernels.conftest import KINDS, assert_same, make_input

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)

# The fast path forced (small_n=0) so that small sizes exercise it too.
fast_top_k = jax.jit(functools.partial(topk.top_k_select_impl, small_n=0),
                     static_argnames="k")
ref_top_k = jax.jit(reference.top_k_select_reference, static_argnames="k")


@pytest.mark.slow
@pytest.mark.parametrize("n,k", [
    (1, 1), (7, 3), (97, 10), (1000, 1), (1000, 999), (4099, 40),
    (40009, 40), (100003, 1000), (100003, 12345)])
def test_top_k_matches_reference_f32(n, k):
  for kind in KINDS:
    x = make_input(kind, n, jnp.float32)
    assert_same(fast_top_k(x, k), ref_top_k(x, k), f"{kind} n={n} k={k}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype,n,k", [(jnp.bfloat16, 65537, 655),
                                       (jnp.float16, 997, 30),
                                       (jnp.float16, 30011, 3001)])
def test_top_k_matches_reference_half(dtype, n, k):
  for kind in KINDS:
    x = make_input(kind, n, dtype)
    assert_same(fast_top_k(x, k), ref_top_k(x, k), f"{kind} {dtype}")


@pytest.mark.slow
def test_top_k_many_ties_across_rows():
  # Row maxima all equal; the k-th value is shared by far more than k entries.
  n, k = 50000, 700
  x = jnp.zeros((n,), jnp.float32).at[::7].set(1.0).at[::331].set(2.0)
  assert_same(fast_top_k(x, k), ref_top_k(x, k))
  x = jnp.tile(jnp.arange(10, dtype=jnp.float32), n // 10)
  assert_same(fast_top_k(x, k), ref_top_k(x, k))


@pytest.mark.slow
def test_public_top_k_small_and_large():
  for n, k in [(5, 2), (20000, 20), (100003, 50000)]:
    x = make_input("ties", n, jnp.float32)
    assert_same(kernels.top_k_select(x, k), ref_top_k(x, k))


@pytest.mark.slow
def test_top_k_vmap_and_jit():
  x = jnp.stack([make_input(kind, 3000, jnp.float32) for kind in KINDS[:4]])
  got = jax.jit(jax.vmap(lambda v: fast_top_k(v, 50)))(x)
  want = jax.vmap(lambda v: ref_top_k(v, 50))(x)
  assert_same(got, want)
  got = jax.vmap(lambda v: kernels.top_k_select(v, 5))(x)
  assert_same(got, jax.vmap(lambda v: ref_top_k(v, 5))(x))


@pytest.mark.parametrize("k", [0, -1, 11])
def test_top_k_bad_k(k):
  with pytest.raises(ValueError, match="k"):
    kernels.top_k_select(jnp.ones((10,)), k)


fast_blockwise = jax.jit(topk.blockwise_top_k_select,
                         static_argnames=("k", "block_size"))
ref_blockwise = jax.jit(reference.blockwise_top_k_select_reference,
                        static_argnames=("k", "block_size"))


@pytest.mark.slow
@pytest.mark.parametrize("n,k,block", [
    (1, 1, 1), (10, 3, 4), (10, 10, 3), (1000, 10, 64), (1001, 300, 7),
    (1001, 40, 31), (5003, 5, 1024), (100003, 100, 1000), (100003, 400, 512)])
def test_blockwise_matches_reference(n, k, block):
  for kind in KINDS:
    x = make_input(kind, n, jnp.float32)
    assert_same(fast_blockwise(x, k, block), ref_blockwise(x, k, block),
                f"{kind} n={n} k={k} B={block}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_blockwise_half(dtype):
  for kind in KINDS:
    x = make_input(kind, 3001, dtype)
    assert_same(fast_blockwise(x, 20, 256), ref_blockwise(x, 20, 256))


@pytest.mark.slow
def test_blockwise_vmap():
  x = jnp.stack([make_input(kind, 999, jnp.float32) for kind in KINDS[:3]])
  got = jax.vmap(lambda v: fast_blockwise(v, 9, 100))(x)
  assert_same(got, jax.vmap(lambda v: ref_blockwise(v, 9, 100))(x))


def test_blockwise_bad_args():
  with pytest.raises(ValueError, match="block_size"):
    kernels.blockwise_top_k_select(jnp.ones((10,)), 2, 0)
  with pytest.raises(ValueError, match="k"):
    kernels.blockwise_top_k_select(jnp.ones((10,)), 0, 4)


def test_row_size_is_static_and_sane():
  assert topk.row_size(100, 50) == 1
  for n, k in [(1 << 24, 16777), (1 << 24, 167772), (10 ** 5, 100)]:
    r = topk.row_size(n, k)
    assert 4 <= r <= 64 and -(-n // r) >= k
  assert np.all(np.asarray(kernels.top_k_select(jnp.arange(3.0), 1)[1]) == 2)
