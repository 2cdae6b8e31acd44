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
    source: ``"files"`` (offline files, the default; ``synthetic`` needs none)
      or ``"tfds"`` (tensorflow-datasets, needs internet to download).
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

  Example:

  >>> from sparsejax.data import load_dataset
  >>> train, test = load_dataset("synthetic", num_train=256, num_test=64)
  >>> train.x.shape, train.y.dtype, train.num_classes
  ((256, 28, 28, 1), dtype('int32'), 10)
  """
  key = _ALIASES.get(name.lower(), name.lower())
  if source == "tfds":
    if key in ("synthetic", "femnist"):
      raise ValueError(
          f"{name!r} has no tfds source: 'synthetic' is generated and "
          "'femnist' is the offline LEAF copy (tfds offers 'emnist', "
          "not partitioned by writer)")
    return tfds_source.load_tfds(key, data_dir, split, **kwargs)
  if source != "files":
    raise ValueError(f"source must be 'files' or 'tfds', got {source!r}")
  if key == "emnist":
    raise ValueError("'emnist' is only available with source='tfds'; offline, "
                     "use 'femnist' (the writer-partitioned LEAF subset)")
  if key not in _FILE_LOADERS:
    raise ValueError(f"unknown dataset {name!r}; known: {DATASET_NAMES}")
  return _FILE_LOADERS[key](data_dir, split, **kwargs)
