"""The shared masked, chunked evaluation against plain numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import data
from sparsejax.federated.evaluation import as_xy
from sparsejax.federated.evaluation import chunked_mean

N, D = 23, 3  # a prime N: no chunk size below divides it


def _data(seed=0):
  rng = np.random.default_rng(seed)
  return {"x": rng.normal(size=(N, D)).astype(np.float32),
          "y": rng.integers(0, 2, size=N).astype(np.int32)}


W = np.array([1.0, -2.0, 0.5], np.float32)


def _metrics(batch):
  """Per example: a score and whether its sign matches the label."""
  score = batch["x"] @ W
  return {"score": score, "correct": (score > 0) == (batch["y"] == 1)}


def _numpy(d, ids):
  score = d["x"][ids] @ W
  return {"score": score.mean(),
          "correct": ((score > 0) == (d["y"][ids] == 1)).mean()}


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [1, 4, 7, N, 64])
def test_whole_dataset_any_chunk_size(chunk_size):
  d = _data()
  got = jax.jit(chunked_mean, static_argnums=(0, 2))(_metrics, d, chunk_size)
  want = _numpy(d, np.arange(N))
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [4, 5])
def test_indices_and_mask_select_the_examples(chunk_size):
  d = _data(1)
  rng = np.random.default_rng(2)
  rows = rng.integers(0, N, size=(4, 11)).astype(np.int32)  # clients' rows
  sizes = np.array([11, 7, 1, 3])
  d["x"][rows[1, 7:]] = np.nan   # padding of client 1: must not leak
  d["x"][rows[1, :7]] = rng.normal(size=(7, D))

  @jax.jit
  def per_client(rows, sizes):
    return jax.vmap(lambda r, s: chunked_mean(
        _metrics, d, chunk_size, indices=r, mask=jnp.arange(11) < s))(
            rows, sizes)

  got = per_client(rows, sizes)
  for c in range(4):
    want = _numpy(d, rows[c, :sizes[c]])
    for k in want:
      np.testing.assert_allclose(got[k][c], want[k], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_no_valid_example_gives_nan_and_bad_chunk_raises():
  d = _data()
  out = chunked_mean(_metrics, d, 4, mask=jnp.zeros(N, bool))
  assert np.isnan(out["score"])
  with pytest.raises(ValueError, match="chunk_size"):
    chunked_mean(_metrics, d, 0)


def test_as_xy_reads_datasets_and_pairs():
  train, _ = data.load_dataset("synthetic", num_train=8, num_test=4)
  x, y = as_xy(train)
  assert x is train.x and y is train.y
  assert as_xy((1, 2)) == (1, 2) and as_xy([1, 2, 3]) == (1, 2)
  with pytest.raises(TypeError, match="test_data must be a Dataset"):
    as_xy(np.zeros(3), "test_data")
