"""Pallas (Triton) kernels against the references.

Compiled on a GPU (``experiments/accelerator_check`` runs this file there),
in interpret mode elsewhere.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.kernels import _common as c
from sparsejax.kernels import cost_weighted
from sparsejax.kernels import pallas_gpu
from sparsejax.kernels import reference
from sparsejax.kernels import threshold
from sparsejax.kernels import topk
from tests.kernels.conftest import assert_same, make_input

CFG = {"block": 256, "interpret": jax.default_backend() != "gpu"}


@pytest.mark.slow
def test_block_counts_and_kth_largest():
  u = jax.random.bits(jax.random.key(0), (2048,), jnp.uint32) % 97
  thr = jnp.arange(16, dtype=jnp.uint32) * 7
  got = pallas_gpu.block_counts_ge(pallas_gpu.to_signed(u),
                                   pallas_gpu.to_signed(thr), **CFG)
  want = (np.asarray(u).reshape(-1, 256)[:, None, :]
          >= np.asarray(thr)[None, :, None]).sum(-1)
  np.testing.assert_array_equal(np.asarray(got), want)
  for k in (1, 100, 2048):
    assert int(pallas_gpu.kth_largest(u, k, **CFG)) == int(
        c.kth_largest(u.reshape(-1, 32), k))


@pytest.mark.slow
@pytest.mark.parametrize("n,k", [(300, 7), (2000, 500)])
def test_pallas_top_k(n, k):
  fast = jax.jit(functools.partial(topk.top_k_select_impl, small_n=0,
                                   pallas=CFG), static_argnames="k")
  for kind in ("normal", "ties", "special", "nan_heavy"):
    x = make_input(kind, n, jnp.float32)
    assert_same(fast(x, k), reference.top_k_select_reference(x, k), kind)


@pytest.mark.slow
def test_pallas_threshold():
  fast = jax.jit(functools.partial(threshold.threshold_select_impl,
                                   pallas=CFG), static_argnames="max_count")
  for kind in ("normal", "ties", "equal", "nan_heavy"):
    x = make_input(kind, 700, jnp.float32)
    for t in (1.0, 0.0, -1.0, np.inf, np.nan):  # no denormals: CPU flushes
      for mc in (0, 50, 700):
        assert_same(fast(x, jnp.float32(t), mc),
                    reference.threshold_select_reference(x, t, mc),
                    f"{kind} t={t} mc={mc}")


@pytest.mark.slow
def test_pallas_cost_weighted():
  fast = jax.jit(functools.partial(cost_weighted.cost_weighted_select_impl,
                                   small_n=0, pallas=CFG),
                 static_argnames=("power", "max_count"))
  n = 900
  cost = jnp.asarray(np.random.default_rng(0).integers(1, 4, n), jnp.float32)
  for kind in ("ties",):
    x = make_input(kind, n, jnp.float32)
    assert_same(fast(x, cost, 60.0, max_count=100),
                reference.cost_weighted_select_reference(x, cost, 60.0,
                                                         max_count=100))


def test_default_config_is_compiled_pallas_on_gpu_only():
  want = ({"block": pallas_gpu.BLOCK, "interpret": False}
          if jax.default_backend() == "gpu" else None)
  assert pallas_gpu.default_config() == want
