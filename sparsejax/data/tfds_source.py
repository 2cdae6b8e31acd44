"""The tensorflow-datasets path (``load_dataset(..., source="tfds")``).

tensorflow-datasets is imported lazily and is optional
(``pip install 'sparsejax[tfds]'``). TensorFlow itself is *not* required:
when it is importable the classic ``tfds.load(..., batch_size=-1)`` is used
(it reads existing TFRecord caches), otherwise ``tfds.data_source`` (array-
record files, no TensorFlow). Either way the result is converted to the same
:class:`~sparsejax.data.dataset.Dataset` arrays and normalisation as the file
loaders. Downloading needs internet; the offline copies are read with
``source="files"`` instead.

Names: ``mnist``, ``fashion_mnist``, ``cifar10``, ``emnist`` (``emnist/byclass``,
62 classes in the FEMNIST label order; tfds stores EMNIST transposed, so the
images are transposed back to upright like FEMNIST, but keep MNIST polarity:
background 0, ink 1), ``ag_news_subset`` (alias ``ag_news``; official 120,000 /
7,600 split, same tokenizer as the csv loader, vocabulary from train).
"""

from __future__ import annotations

import importlib

import numpy as np

from sparsejax.data import ag_news as ag_news_lib
from sparsejax.data import dataset as dataset_lib

# name -> (tfds name, num_classes, normalisation key, transpose images)
_IMAGE_DATASETS = {
    "mnist": ("mnist", 10, "mnist", False),
    "fashion_mnist": ("fashion_mnist", 10, "fashion_mnist", False),
    "cifar10": ("cifar10", 10, "cifar10", False),
    "emnist": ("emnist/byclass", 62, "femnist", True),
}
_TEXT_DATASETS = {"ag_news_subset": "ag_news_subset", "ag_news": "ag_news_subset"}
TFDS_NAMES = tuple(_IMAGE_DATASETS) + tuple(_TEXT_DATASETS)


def import_tfds():
  """``tensorflow_datasets``, or an ImportError saying how to install it."""
  try:
    return importlib.import_module("tensorflow_datasets")
  except ImportError as e:
    raise ImportError(
        "source='tfds' needs tensorflow-datasets: pip install 'sparsejax[tfds]' "
        "(or pip install tensorflow-datasets). Without internet, use the "
        "offline copies with source='files' instead.") from e


def _has_tensorflow() -> bool:
  try:
    importlib.import_module("tensorflow")
    return True
  except ImportError:
    return False


def _read_split(tfds, tfds_name: str, split: str, data_dir, download: bool
                ) -> dict[str, np.ndarray]:
  """All features of one split as numpy arrays (strings as Python str)."""
  if _has_tensorflow():
    ds = tfds.load(tfds_name, split=split, data_dir=data_dir, batch_size=-1,
                   download=download)
    return {k: np.asarray(v) for k, v in tfds.as_numpy(ds).items()}
  source = tfds.data_source(tfds_name, split=split, data_dir=data_dir,
                            download=download)
  columns: dict[str, list] = {}
  for i in range(len(source)):  # (mock_data breaks the batched __getitems__)
    for k, v in source[i].items():
      columns.setdefault(k, []).append(v)
  return {k: np.asarray(v) for k, v in columns.items()}


def _as_str(values: np.ndarray) -> list[str]:
  return [v.decode("utf-8") if isinstance(v, bytes) else str(v)
          for v in values.tolist()]


def load_tfds(name: str, data_dir=None, split: str | None = None, *,
              standardize: bool = True, download: bool = True,
              max_length: int = 64, vocab_size: int | None = 20000,
              min_count: int = 1):
  """Loads ``name`` with tensorflow-datasets as :class:`Dataset` arrays.

  Args:
    name: one of :data:`TFDS_NAMES`.
    data_dir: tfds data directory (tfds' own default when None; *not* the
      offline-copy directory).
    split: ``None`` for ``(train, test)``, or ``"train"`` / ``"test"``.
    standardize: image standardisation (see :mod:`sparsejax.data.dataset`).
    download: let tfds download and prepare the data if needed.
    max_length, vocab_size, min_count: text options, as for AG News.
  """
  splits = dataset_lib.check_split(split)
  if name not in _IMAGE_DATASETS and name not in _TEXT_DATASETS:
    raise ValueError(f"source='tfds' supports {TFDS_NAMES}, got {name!r}")
  tfds = import_tfds()
  if name in _TEXT_DATASETS:
    # The vocabulary comes from train, so train is read even for split="test".
    parts = {s: _read_split(tfds, _TEXT_DATASETS[name], s, data_dir, download)
             for s in dataset_lib.SPLITS}
    text = {s: [t + " " + d for t, d in zip(_as_str(p["title"]),
                                             _as_str(p["description"]))]
            for s, p in parts.items()}
    train, test = ag_news_lib.make_text_datasets(
        text["train"], parts["train"]["label"], text["test"],
        parts["test"]["label"], name="ag_news", num_classes=4,
        max_length=max_length, vocab_size=vocab_size, min_count=min_count)
    out = {"train": train, "test": test}
    return (train, test) if split is None else out[splits[0]]

  tfds_name, num_classes, norm_key, transpose = _IMAGE_DATASETS[name]
  out = []
  for s in splits:
    arrays = _read_split(tfds, tfds_name, s, data_dir, download)
    images = np.asarray(arrays["image"], np.uint8)
    if transpose:
      images = np.swapaxes(images, 1, 2)
    out.append(dataset_lib.images_to_dataset(
        images, arrays["label"], name=name, num_classes=num_classes,
        standardize_as=norm_key if standardize else None))
  return tuple(out) if split is None else out[0]
