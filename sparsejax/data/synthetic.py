"""A small learnable dataset generated from a seed: no files, no download.

Gaussian class clusters: class ``c`` has a prototype ``m_c`` and an example is
``m_c + noise * N(0, I)``. For image shapes ``(H, W, C)`` the prototypes are
smooth random patterns (white noise blurred with a Gaussian of ``smooth``
pixels, done with an FFT), so convolutional models have spatial structure to
use; for vector shapes ``(D,)`` they are plain Gaussian directions. Every
prototype is scaled to norm ``class_sep`` (in units of the per-pixel noise
std), so two classes are about ``sqrt(2) * class_sep`` apart and the Bayes
error falls quickly with ``class_sep``; the default (10 classes, 28x28x1,
``class_sep=8``) is learnable to ~99% by a linear model trained briefly.

The arrays are already zero-mean and roughly unit-variance float32, so no
further standardisation is applied. Labels are balanced (``i % num_classes``)
and shuffled. Train and test share prototypes and differ in samples; the
same arguments always give the same arrays. ``num_groups`` adds writer-like
``groups`` (for the ``"groups"`` federated partition).
"""

from __future__ import annotations

import numpy as np

from sparsejax.data import dataset as dataset_lib


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur over the two spatial axes (1 and 2) of ``(K, H, W, C)``."""
  h, w = field.shape[1:3]
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[None, :]
  kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
  spec = np.fft.fft2(field, axes=(1, 2)) * kernel[None, :, :, None]
  return np.real(np.fft.ifft2(spec, axes=(1, 2)))


def synthetic_prototypes(num_classes: int, shape: tuple[int, ...], seed: int,
                         class_sep: float, smooth: float) -> np.ndarray:
  """``(num_classes, *shape)`` class means, each of norm ``class_sep``."""
  rng = np.random.default_rng([seed, 0])
  g = rng.standard_normal((num_classes, *shape))
  if len(shape) == 3 and smooth > 0:
    g = _smooth(g, smooth)
  g -= g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)
  norms = np.sqrt((g ** 2).sum(axis=tuple(range(1, g.ndim)), keepdims=True))
  return (class_sep * g / norms).astype(np.float32)


def load_synthetic(data_dir=None, split: str | None = None, *,
                   num_train: int = 2048, num_test: int = 512,
                   num_classes: int = 10, shape: tuple[int, ...] = (28, 28, 1),
                   class_sep: float = 8.0, noise: float = 1.0,
                   smooth: float = 2.0, seed: int = 0,
                   num_groups: int | None = None):
  """Gaussian-cluster classification data (see module docstring).

  Args:
    data_dir: ignored (accepted so every loader has the same signature).
    split: ``None`` for ``(train, test)``, or ``"train"`` / ``"test"``.
    num_train: training examples.
    num_test: test examples.
    num_classes: number of classes (>= 2).
    shape: example shape, ``(H, W, C)`` images or ``(D,)`` vectors.
    class_sep: norm of each class prototype, in noise standard deviations.
    noise: per-element noise std.
    smooth: blur of image prototypes in pixels (0 for none).
    seed: everything is a function of this seed.
    num_groups: if set, every example gets a group id in ``[0, num_groups)``
      (``Dataset.groups``, drawn uniformly at random), like FEMNIST's writers.
  """
  del data_dir
  splits = dataset_lib.check_split(split)
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}")
  if num_groups is not None and num_groups < 1:
    raise ValueError(f"num_groups must be None or >= 1, got {num_groups}")
  shape = tuple(int(s) for s in shape)
  protos = synthetic_prototypes(num_classes, shape, seed, class_sep, smooth)
  sizes = {"train": num_train, "test": num_test}
  out = []
  for i, s in enumerate(dataset_lib.SPLITS):
    rng = np.random.default_rng([seed, i + 1])
    n = sizes[s]
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
    x = protos[y] + np.float32(noise) * rng.standard_normal(
        (n, *shape), dtype=np.float32)
    groups = (None if num_groups is None else
              rng.integers(0, num_groups, n).astype(np.int32))
    if s in splits:
      out.append(dataset_lib.Dataset(x=x, y=y, num_classes=num_classes,
                                     name="synthetic", groups=groups))
  return tuple(out) if split is None else out[0]
