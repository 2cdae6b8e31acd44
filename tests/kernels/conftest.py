"""Input generators shared by the kernel tests."""

import jax.numpy as jnp
import numpy as np

KINDS = ("normal", "ties", "equal", "zeros", "special", "nan_heavy")


def make_input(kind: str, n: int, dtype, seed: int = 0) -> jnp.ndarray:
  """Random or adversarial flat vector of length ``n``."""
  rng = np.random.default_rng(seed + 1000 * n)
  tiny = float(jnp.finfo(dtype).smallest_subnormal)
  if kind == "normal":
    v = rng.standard_normal(n)
  elif kind == "ties":  # many ties at every magnitude, both signs
    v = np.round(rng.standard_normal(n) * 2)
  elif kind == "equal":
    v = np.full(n, -1.5)
  elif kind == "zeros":  # +0 and -0 with a few numbers
    v = np.where(rng.random(n) < 0.5, 0.0, -0.0)
    v[rng.random(n) < 0.05] = 3.0
  elif kind == "special":
    pool = np.array([0.0, -0.0, tiny, -tiny, 3 * tiny, np.inf, -np.inf,
                     np.nan, -np.nan, 1.0, -1.0, 2.0, 1e-3, 65504.0])
    v = pool[rng.integers(0, len(pool), n)]
    v = np.where(rng.random(n) < 0.3, rng.standard_normal(n), v)
  elif kind == "nan_heavy":  # fewer numbers than k: NaNs get selected
    v = np.where(rng.random(n) < 0.9, np.nan, rng.standard_normal(n))
  else:
    raise ValueError(kind)
  return jnp.asarray(v.astype(np.float32), dtype=dtype)


def bits(a) -> np.ndarray:
  """Bit pattern view, so NaN == NaN and -0 != 0 in comparisons."""
  a = np.asarray(a)
  if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
    return a.view({2: np.uint16, 4: np.uint32}[a.dtype.itemsize])
  return a


def assert_same(got, want, what=""):
  """Exact equality of tuples of arrays (values bitwise, indices, counts)."""
  assert len(got) == len(want)
  for i, (g, w) in enumerate(zip(got, want)):
    g, w = np.asarray(g), np.asarray(w)
    assert g.shape == w.shape and g.dtype == w.dtype, (what, i, g.dtype,
                                                        w.dtype)
    np.testing.assert_array_equal(bits(g), bits(w), err_msg=f"{what} out {i}")
