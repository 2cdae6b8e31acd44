"""``load_dataset``: one entry point for every dataset and source."""

from __future__ import annotations

from sparsejax.data import ag_news
from sparsejax.data import cifar10
from sparsejax.data import femnist
from sparsejax.data import idx
from sparsejax.data import synthetic
from sparsejax.data import tfds_source

_FILE_LOADERS = {
    "mnist": idx.load_mnist,
    "fashion_mnist": idx.load_fashion_mnist,
    "cifar10": cifar10.load_cifar10,
    "femnist": femnist.load_femnist,
    "ag_news": ag_news.load_ag_news,
    "ag_news_subset": ag_news.load_ag_news,
    "synthetic": synthetic.load_synthetic,
}
_ALIASES = {"fashion-mnist": "fashion_mnist", "cifar-10": "cifar10",
            "emnist/byclass": "emnist"}
DATASET_NAMES = tuple(_FILE_LOADERS) + ("emnist",)
#: Where data comes from: the offline files, tensorflow-datasets, or generated.
SOURCES = ("files", "tfds", "synthetic")
# source="synthetic" stands in for a named image dataset with Gaussian-cluster
# data of its shape and classes (femnist-like data also gets 300 writers).
_SYNTHETIC_LIKE = {
    "mnist": {"shape": (28, 28, 1), "num_classes": 10},
    "fashion_mnist": {"shape": (28, 28, 1), "num_classes": 10},
    "cifar10": {"shape": (32, 32, 3), "num_classes": 10},
    "femnist": {"shape": (28, 28, 1), "num_classes": 62, "num_groups": 300},
    "emnist": {"shape": (28, 28, 1), "num_classes": 62},
}
_SYNTHETIC_SIZES = {"num_train": 10000, "num_test": 2000}


def check_source(name: str, source: str) -> str:
  """The canonical dataset name, if ``source`` can provide ``name``.

  Raises:
    ValueError: naming ``source`` and its choices, or ``name`` and the names
      that ``source`` knows.
  """
  if source not in SOURCES:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  key = _ALIASES.get(name.lower(), name.lower())
  if key not in DATASET_NAMES:
    raise ValueError(f"unknown dataset {name!r}; known: {DATASET_NAMES}")
  if source == "tfds" and key in ("synthetic", "femnist"):
    raise ValueError(
        f"{name!r} has no tfds source: 'synthetic' is generated and "
        "'femnist' is the offline LEAF copy (tfds offers 'emnist', "
        "not partitioned by writer)")
  if source == "files" and key == "emnist":
    raise ValueError("'emnist' is only available with source='tfds'; offline, "
                     "use 'femnist' (the writer-partitioned LEAF subset)")
  if (source == "synthetic" and key != "synthetic"
      and key not in _SYNTHETIC_LIKE):
    raise ValueError(f"source='synthetic' has no stand-in for {name!r} (text); "
                     f"it generates images like {tuple(_SYNTHETIC_LIKE)}")
  return key


def load_dataset(name: str, data_dir=None, split: str | None = None, *,
                 source: str = "files", **kwargs):
  """Loads a dataset as ``(train, test)`` :class:`Dataset` s (or one split).

  Args:
    name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``femnist``, ``ag_news``
      (alias ``ag_news_subset``), ``synthetic``; with ``source="tfds"`` also
      ``emnist``.
    data_dir: for ``source="files"``, the directory holding the offline copies
      (default ``$SPARSEJAX_DATA_DIR``, else ``<repo>/../shared/data``); for
      ``source="tfds"``, the tfds data directory.
    split: ``None`` returns ``(train, test)``; ``"train"`` or ``"test"`` returns
      that split only.
    source: ``"files"`` (offline files, the default; ``synthetic`` needs none),
      ``"tfds"`` (tensorflow-datasets, needs internet to download) or
      ``"synthetic"`` (:func:`~sparsejax.data.load_synthetic`; for an image
      dataset's name, a stand-in of its shape and classes, 10,000 train and
      2,000 test examples unless ``kwargs`` say otherwise).
    **kwargs: passed to the loader, e.g. ``standardize=False``, ``cache_dir``
      (cifar10), ``test_fraction``/``seed``/``max_length``/``vocab_size``
      (ag_news), ``num_train``/``num_classes``/``shape``/``class_sep``/``seed``
      (synthetic).

  Returns:
    ``(train, test)``, or the one split asked for.

  Raises:
    FileNotFoundError: the files are missing; the message lists every path
      looked at and how to get the data.
    ImportError: ``source="tfds"`` without tensorflow-datasets installed.
    ValueError: an unknown ``source`` or a name it cannot provide.

  Example:

  >>> from sparsejax.data import load_dataset
  >>> train, test = load_dataset("synthetic", num_train=256, num_test=64)
  >>> train.x.shape, train.y.dtype, train.num_classes
  ((256, 28, 28, 1), dtype('int32'), 10)
  """
  key = check_source(name, source)
  if source == "tfds":
    return tfds_source.load_tfds(key, data_dir, split, **kwargs)
  if source == "synthetic" and key != "synthetic":
    kwargs = {**_SYNTHETIC_SIZES, **_SYNTHETIC_LIKE[key], **kwargs}
    return synthetic.load_synthetic(data_dir, split, **kwargs)
  return _FILE_LOADERS[key](data_dir, split, **kwargs)
