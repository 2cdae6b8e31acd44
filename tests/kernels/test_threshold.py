"""Threshold selection against its reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import kernels
from sparsejax.kernels import reference
from sparsejax.kernels import threshold
from tests.kernels.conftest import KINDS, assert_same, make_input

fast = jax.jit(threshold.threshold_select, static_argnames="max_count")
ref = jax.jit(reference.threshold_select_reference,
              static_argnames="max_count")


def _thresholds(dtype):
  tiny = float(jnp.finfo(dtype).smallest_subnormal)
  return [1.0, 0.0, -0.0, -1.0, tiny, 2 * tiny, 2.0, np.inf, np.nan, 0.37]


@pytest.mark.slow
@pytest.mark.parametrize("n,max_count", [
    (1, 0), (1, 1), (1, 3), (33, 5), (97, 97), (1000, 10), (1000, 1005),
    (100003, 100), (100003, 60000)])
def test_threshold_matches_reference(n, max_count):
  for kind in KINDS:
    x = make_input(kind, n, jnp.float32)
    for t in _thresholds(jnp.float32):
      t = jnp.float32(t)  # traced: one compilation per shape
      assert_same(fast(x, t, max_count), ref(x, t, max_count),
                  f"{kind} t={t} n={n} mc={max_count}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_threshold_half(dtype):
  for kind in KINDS:
    x = make_input(kind, 4001, dtype)
    for t in _thresholds(dtype):
      t = jnp.float32(t)
      assert_same(fast(x, t, 500), ref(x, t, 500), f"{kind} {dtype} t={t}")


@pytest.mark.slow
def test_threshold_overflow_count_and_python_threshold():
  x = make_input("normal", 5000, jnp.float32)
  _, idx, count = kernels.threshold_select(x, 0.5, 100)
  assert int(count) == int(jnp.sum(jnp.abs(x) >= 0.5)) > 100
  assert np.all(np.diff(np.asarray(idx)) > 0)


@pytest.mark.slow
def test_threshold_vmap_over_thresholds():
  x = jnp.stack([make_input(kind, 777, jnp.float32) for kind in KINDS[:3]])
  t = jnp.array([0.5, 1.0, 0.0], jnp.float32)
  got = jax.vmap(lambda v, s: fast(v, s, 300))(x, t)
  assert_same(got, jax.vmap(lambda v, s: ref(v, s, 300))(x, t))


def test_threshold_bad_max_count():
  with pytest.raises(ValueError, match="max_count"):
    kernels.threshold_select(jnp.ones((10,)), 0.5, -1)
