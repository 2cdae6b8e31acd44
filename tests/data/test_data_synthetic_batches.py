"""The synthetic dataset and the ``batches`` iterator."""

import itertools

import jax
import numpy as np
import pytest

from sparsejax.data import Dataset
from sparsejax.data import batches
from sparsejax.data import load_dataset


def _ridge_accuracy(train, test, lam=10.0):
  """Test accuracy of a least-squares linear classifier fit on train."""
  flat = lambda d: np.c_[d.x.reshape(len(d.y), -1), np.ones(len(d.y))]
  a, b = flat(train), flat(test)
  w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]),
                      a.T @ np.eye(train.num_classes)[train.y])
  return float(np.mean(np.argmax(b @ w, axis=1) == test.y))


def test_synthetic_default_shapes_and_balance():
  train, test = load_dataset("synthetic")
  assert train.x.shape == (2048, 28, 28, 1) and test.x.shape == (512, 28, 28, 1)
  assert train.x.dtype == np.float32 and train.y.dtype == np.int32
  assert train.num_classes == 10 and train.name == "synthetic"
  np.testing.assert_array_equal(np.bincount(test.y), [52] * 2 + [51] * 8)
  assert abs(float(train.x.mean())) < 0.05 and 0.9 < float(train.x.std()) < 1.2


def test_synthetic_is_deterministic():
  a = load_dataset("synthetic", seed=3, num_train=64, num_test=32)
  b = load_dataset("synthetic", seed=3, num_train=64, num_test=32)
  c = load_dataset("synthetic", seed=4, num_train=64, num_test=32)
  for s in range(2):
    np.testing.assert_array_equal(a[s].x, b[s].x)
    np.testing.assert_array_equal(a[s].y, b[s].y)
  assert not np.array_equal(a[0].x, c[0].x)
  # One split alone equals that split of the pair.
  np.testing.assert_array_equal(
      load_dataset("synthetic", split="test", seed=3, num_train=64, num_test=32).x,
      a[1].x)


@pytest.mark.slow
def test_synthetic_is_linearly_learnable():
  train, test = load_dataset("synthetic")
  assert _ridge_accuracy(train, test) > 0.97
  # Harder setting is still learnable, and accuracy falls with class_sep.
  hard = load_dataset("synthetic", class_sep=3.0)
  assert 0.3 < _ridge_accuracy(*hard) < _ridge_accuracy(train, test)


def test_synthetic_vectors_and_classes():
  train, test = load_dataset("synthetic", shape=(20,), num_classes=3,
                             num_train=300, num_test=300, class_sep=6.0)
  assert train.x.shape == (300, 20) and set(np.unique(train.y)) == {0, 1, 2}
  assert _ridge_accuracy(train, test, lam=1.0) > 0.9


def _toy(n=10):
  return Dataset(x=np.arange(n)[:, None].astype(np.float32), y=np.arange(n),
                 num_classes=n, name="toy")


def test_batches_deterministic_given_seed():
  ds = _toy(50)
  take = lambda rng: [b[1].tolist() for b in batches(ds, 8, rng, epochs=3)]
  assert take(0) == take(0)
  assert take(0) != take(1)
  assert take(jax.random.key(5)) == take(jax.random.key(5))
  assert take(np.random.default_rng(7)) == take(7)


def test_batches_cover_each_epoch_once():
  ds = _toy(10)
  got = list(batches(ds, 4, 0, epochs=2, drop_remainder=False))
  assert [len(y) for _, y in got] == [4, 4, 2, 4, 4, 2]
  for epoch in (got[:3], got[3:]):
    np.testing.assert_array_equal(np.sort(np.concatenate([y for _, y in epoch])),
                                  np.arange(10))
  assert not np.array_equal(got[0][1], got[3][1])  # reshuffled per epoch
  for x, y in got:
    np.testing.assert_array_equal(x[:, 0], y)  # x and y stay paired


def test_batches_drop_remainder_and_endless():
  ds = _toy(10)
  got = list(batches(ds, 4, 0, epochs=1))
  assert len(got) == 2 and all(x.shape == (4, 1) for x, _ in got)
  assert len(set(np.concatenate([y for _, y in got]).tolist())) == 8
  endless = list(itertools.islice(batches(ds, 3, 0), 100))
  assert len(endless) == 100
  assert list(batches(ds, 4, 0, epochs=0)) == []
  # A plain (x, y) tuple works too.
  assert len(list(batches((ds.x, ds.y), 5, 0, epochs=1))) == 2


def test_batches_bad_arguments():
  with pytest.raises(ValueError, match="batch_size"):
    next(batches(_toy(4), 5, 0))
  with pytest.raises(ValueError, match="batch_size"):
    next(batches(_toy(4), 0, 0))
