"""Shuffled minibatches over host arrays."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sparsejax.federated.evaluation import as_xy


def as_numpy_rng(rng) -> np.random.Generator:
  """A numpy Generator from an int seed, a Generator, or a JAX PRNG key."""
  if isinstance(rng, np.random.Generator):
    return rng
  if isinstance(rng, (int, np.integer)):
    return np.random.default_rng(int(rng))
  import jax  # pylint: disable=g-import-not-at-top
  if isinstance(rng, jax.Array) and jax.dtypes.issubdtype(
      rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  return np.random.default_rng(np.asarray(rng).astype(np.uint32).ravel().tolist())


def batches(dataset, batch_size: int, rng, epochs: int | None = None,
            drop_remainder: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Iterates shuffled ``(x, y)`` numpy batches of a dataset.

  Every epoch is a fresh permutation drawn from ``rng``, so the whole stream
  is a deterministic function of the seed.

  Args:
    dataset: a :class:`Dataset` (or anything with ``x`` and ``y`` arrays of
      equal length; a ``(x, y)`` tuple also works).
    batch_size: examples per batch.
    rng: int seed, ``np.random.Generator`` (consumed), or JAX PRNG key.
    epochs: number of passes; ``None`` for an endless stream.
    drop_remainder: drop the last incomplete batch of each epoch (keeps shapes
      static for jit); with False every example appears once per epoch.

  Yields:
    ``(x[idx], y[idx])`` for each batch.

  Example:

  >>> from sparsejax.data import batches, load_dataset
  >>> train = load_dataset("synthetic", "unused", "train", num_train=100)
  >>> [x.shape[0] for x, _ in batches(train, 32, rng=0, epochs=1)]
  [32, 32, 32]
  >>> [len(y) for _, y in batches(train, 32, 0, epochs=1, drop_remainder=False)]
  [32, 32, 32, 4]
  """
  x, y = as_xy(dataset, "dataset")
  n = x.shape[0]
  if y.shape[0] != n:
    raise ValueError(f"x has {n} examples but y has {y.shape[0]}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if drop_remainder and batch_size > n:
    raise ValueError(f"batch_size {batch_size} > {n} examples with "
                     "drop_remainder=True would yield nothing")
  if epochs is not None and epochs < 0:
    raise ValueError(f"epochs must be >= 0 or None, got {epochs}")
  gen = as_numpy_rng(rng)
  stop = n - batch_size + 1 if drop_remainder else n
  epoch = 0
  while epochs is None or epoch < epochs:
    perm = gen.permutation(n)
    for start in range(0, stop, batch_size):
      idx = perm[start:start + batch_size]
      yield x[idx], y[idx]
    epoch += 1


def batch_at(dataset, step: int, batch_size: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
  """The ``step``-th batch of a seeded epoch-permutation stream.

  A pure function of ``(seed, step)`` with no iterator state, so a run
  restored at step ``s`` sees exactly the batches it would have seen. Epoch
  ``e`` uses the permutation ``default_rng([seed, e])``; the last incomplete
  batch of each epoch is dropped.
  """
  x, y = as_xy(dataset, "dataset")
  per_epoch = x.shape[0] // batch_size
  if per_epoch < 1:
    raise ValueError(f"batch_size {batch_size} > {x.shape[0]} examples")
  epoch, index = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(x.shape[0])
  idx = perm[index * batch_size:(index + 1) * batch_size]
  return x[idx], y[idx]
