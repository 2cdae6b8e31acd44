"""FEMNIST (LEAF): handwritten digits and letters, partitioned by writer.

The offline copy ``<data_dir>/femnist/femnist_subset.npz`` is a real 5% LEAF
sample: 300 writers, 41,434 train / 4,756 test images of 28x28, 62 classes
(0-9 digits, 10-35 A-Z, 36-61 a-z). Every writer appears in both splits.

Pixels are stored with 255 = white background; the loader inverts them,
``x = 1 - x / 255`` (background 0, ink 1, like MNIST), then standardises with
the FEMNIST constants of :data:`sparsejax.data.dataset.NORMALIZATION`.
``Dataset.groups`` is the writer index (into :func:`femnist_writers`), the
natural non-IID client partition for federated experiments.
"""

from __future__ import annotations

import pathlib

import numpy as np

from sparsejax.data import dataset as dataset_lib
from sparsejax.data import paths

NPZ = "femnist_subset.npz"
NUM_CLASSES = 62
# Where good copies come from (keyword arguments of paths.missing_data_error
# and paths.reading).
_HOW_TO_GET = {
    "extra_hint": (
        f"{NPZ} holds writers, train_x/_y/_writer and test_x/_y/_writer; "
        "the full LEAF FEMNIST can be built with "
        "LEAF's preprocess.sh (https://github.com/TalwalkarLab/leaf); tfds "
        "offers the un-partitioned 'emnist' (load_dataset('emnist', "
        "source='tfds'))")}


def _find_npz(data_dir) -> pathlib.Path:
  root, why = paths.resolve_data_dir(data_dir)
  candidates = [(root / "femnist" / NPZ, why)]
  if data_dir is not None:
    candidates += [(root / NPZ, why), (root, why)]
  found = next((p for p, _ in candidates if p.is_file()), None)
  if found is None:
    raise paths.missing_data_error(f"femnist ({NPZ})", candidates,
                                   **_HOW_TO_GET)
  return found


def femnist_writers(data_dir=None) -> np.ndarray:
  """Writer ids (str) indexed by ``Dataset.groups``."""
  path = _find_npz(data_dir)
  with paths.reading(path, "femnist", **_HOW_TO_GET), np.load(path) as z:
    return np.asarray(z["writers"])


def load_femnist(data_dir=None, split: str | None = None, *, standardize: bool = True):
  """FEMNIST subset, ``(N, 28, 28, 1)`` float32, with writer ``groups``.

  Returns ``(train, test)``, or one split for ``split="train"`` / ``"test"``.
  """
  splits = dataset_lib.check_split(split)
  path = _find_npz(data_dir)
  out = []
  with paths.reading(path, "femnist", **_HOW_TO_GET), np.load(path) as z:
    num_writers = z["writers"].shape[0]
    for s in splits:
      x, y, w = z[f"{s}_x"], z[f"{s}_y"], z[f"{s}_writer"]
      if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise ValueError(f"{s}_x should be uint8 (N, 28, 28), got "
                         f"{x.dtype} {x.shape}")
      if not (y.shape == w.shape == (x.shape[0],)):
        raise ValueError(f"{s}_x, {s}_y and {s}_writer have mismatched "
                         f"shapes {x.shape}, {y.shape} and {w.shape}")
      if y.size and (y.max() >= NUM_CLASSES or w.min() < 0 or w.max() >= num_writers):
        raise ValueError(f"{s} labels or writer indices out of range")
      out.append(dataset_lib.images_to_dataset(
          x, y, name="femnist", num_classes=NUM_CLASSES,
          standardize_as="femnist" if standardize else None,
          invert=True, groups=w))
  return tuple(out) if split is None else out[0]
