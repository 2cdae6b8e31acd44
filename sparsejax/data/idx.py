"""MNIST and Fashion-MNIST from the official idx files (gzip or plain).

Every file must hold exactly the official number of examples (60,000 train,
10,000 test): a truncated or damaged file raises
:class:`~sparsejax.data.paths.DatasetFileError` naming it, never a shorter
dataset.
"""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

from sparsejax.data import dataset as dataset_lib
from sparsejax.data import paths

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SIZES = {"train": 60000, "test": 10000}

FASHION_MNIST_SYSTEM_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")

# Where good copies come from (keyword arguments of paths.missing_data_error
# and paths.reading).
_HOW_TO_GET = {
    "mnist": {
        "tfds_name": "mnist",
        "extra_hint": (
            "the four official files from "
            "https://storage.googleapis.com/cvdf-datasets/mnist/ (the mirror "
            "of http://yann.lecun.com/exdb/mnist/ that tfds downloads)")},
    "fashion_mnist": {
        "tfds_name": "fashion_mnist",
        "extra_hint": (
            "on Debian/Ubuntu: apt-get install -y dataset-fashion-mnist "
            "(--reinstall repairs it), or the four official files from "
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")},
}


def parse_idx(raw: bytes) -> np.ndarray:
  """Decodes the bytes of one (uncompressed) idx file into an array."""
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise ValueError("not an idx file (bad magic number)")
  dtype = _IDX_DTYPES.get(raw[2])
  if dtype is None:
    raise ValueError(f"idx: unknown type code {raw[2]:#x}")
  ndim = raw[3]
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  offset = 4 + 4 * ndim
  count = int(np.prod(shape)) if shape else 1
  if len(raw) - offset != count * np.dtype(dtype).itemsize:
    raise ValueError(f"idx: header says shape {shape} but the payload has "
                     f"{len(raw) - offset} bytes")
  return np.frombuffer(raw, dtype, count=count, offset=offset).reshape(shape)


def _read_idx(path: str | os.PathLike) -> np.ndarray:
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
  return parse_idx(raw)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an idx file; gzip is detected from the content, not the name.

  Raises:
    DatasetFileError: the file is damaged or truncated (the message names it).
  """
  with paths.reading(path, "idx file", extra_hint=(
      "MNIST: " + _HOW_TO_GET["mnist"]["extra_hint"] + "; Fashion-MNIST: "
      + _HOW_TO_GET["fashion_mnist"]["extra_hint"])):
    return _read_idx(path)


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
  for name in (stem + ".gz", stem):
    if (directory / name).is_file():
      return directory / name
  return None


def _load_idx_pair(directory: pathlib.Path, split: str, name: str
                   ) -> tuple[np.ndarray, np.ndarray]:
  n = _SIZES[split]
  images_path, labels_path = (_find(directory, stem) for stem in _FILES[split])
  with paths.reading(images_path, name, **_HOW_TO_GET[name]):
    images = _read_idx(images_path)
    if images.shape != (n, 28, 28):
      raise ValueError(f"expected the {n} {split} images of 28x28, "
                       f"got shape {images.shape}")
  with paths.reading(labels_path, name, **_HOW_TO_GET[name]):
    labels = _read_idx(labels_path)
    if labels.shape != (n,):
      raise ValueError(f"expected the {n} {split} labels, got shape "
                       f"{labels.shape}")
    if labels.max() > 9:
      raise ValueError(f"label {labels.max()} out of range 0-9")
  return images, labels


def _candidates(data_dir, name: str, subdirs: tuple[str, ...],
                extra: tuple[tuple[pathlib.Path, str], ...] = ()):
  root, why = paths.resolve_data_dir(data_dir)
  found = [(root / s, why) for s in subdirs] + list(extra)
  if data_dir is not None:
    # An explicit directory may also *be* the folder holding the idx files.
    found.insert(0, (root, why))
  return found


def _load(name: str, looked, split: str | None, standardize: bool):
  splits = dataset_lib.check_split(split)
  for directory, _ in looked:
    if all(_find(directory, stem) is not None
           for s in splits for stem in _FILES[s]):
      break
  else:
    files = ", ".join(f"{s}.gz" for sp in splits for s in _FILES[sp])
    raise paths.missing_data_error(f"{name} ({files})", looked,
                                   **_HOW_TO_GET[name])
  out = []
  for s in splits:
    images, labels = _load_idx_pair(directory, s, name)
    out.append(dataset_lib.images_to_dataset(
        images, labels, name=name, num_classes=10,
        standardize_as=name if standardize else None))
  return tuple(out) if split is None else out[0]


def load_mnist(data_dir=None, split: str | None = None, *, standardize: bool = True):
  """MNIST from ``<data_dir>/mnist/*-idx?-ubyte.gz``.

  Returns ``(train, test)`` (60,000 / 10,000 examples, ``(N, 28, 28, 1)``) or
  one split when ``split`` is ``"train"`` or ``"test"``.
  """
  looked = _candidates(data_dir, "mnist", ("mnist",))
  return _load("mnist", looked, split, standardize)


def load_fashion_mnist(data_dir=None, split: str | None = None, *,
                       standardize: bool = True):
  """Fashion-MNIST from ``<data_dir>/fashion_mnist`` or the Debian package.

  Looks in ``<data_dir>/fashion_mnist``, ``<data_dir>/fashion-mnist`` and then
  ``/usr/share/datasets/fashion-mnist`` (``apt-get install
  dataset-fashion-mnist``). Same shapes and return convention as MNIST.
  """
  looked = _candidates(
      data_dir, "fashion_mnist", ("fashion_mnist", "fashion-mnist"),
      extra=((FASHION_MNIST_SYSTEM_DIR, "Debian package dataset-fashion-mnist"),))
  return _load("fashion_mnist", looked, split, standardize)
