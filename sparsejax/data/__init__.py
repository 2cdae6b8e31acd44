"""Datasets as host numpy arrays: offline file loaders, tfds, synthetic.

``load_dataset(name)`` returns ``(train, test)`` :class:`Dataset` s; images are
float32 ``(N, H, W, C)`` scaled to [0, 1] then standardised per channel with
fixed constants (:data:`NORMALIZATION`); text is int32 token ids ``(N, L)``
with 0 as padding. ``batches`` iterates shuffled minibatches.
"""

from sparsejax.data.ag_news import load_ag_news
from sparsejax.data.batching import batch_at
from sparsejax.data.batching import batches
from sparsejax.data.cifar10 import CLASSES as CIFAR10_CLASSES
from sparsejax.data.cifar10 import load_cifar10
from sparsejax.data.dataset import Dataset
from sparsejax.data.dataset import NORMALIZATION
from sparsejax.data.femnist import femnist_writers
from sparsejax.data.femnist import load_femnist
from sparsejax.data.idx import load_fashion_mnist
from sparsejax.data.idx import load_mnist
from sparsejax.data.idx import read_idx
from sparsejax.data.loader import DATASET_NAMES
from sparsejax.data.loader import SOURCES
from sparsejax.data.loader import check_source
from sparsejax.data.loader import load_dataset
from sparsejax.data.paths import resolve_cache_dir
from sparsejax.data.paths import resolve_data_dir
from sparsejax.data.synthetic import load_synthetic
from sparsejax.data.text import build_vocab
from sparsejax.data.text import token_ids
from sparsejax.data.text import tokenize
from sparsejax.data.tfds_source import load_tfds

__all__ = [
    "CIFAR10_CLASSES",
    "DATASET_NAMES",
    "Dataset",
    "NORMALIZATION",
    "SOURCES",
    "batch_at",
    "batches",
    "build_vocab",
    "check_source",
    "token_ids",
    "femnist_writers",
    "load_ag_news",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_femnist",
    "load_mnist",
    "load_synthetic",
    "load_tfds",
    "read_idx",
    "resolve_cache_dir",
    "resolve_data_dir",
    "tokenize",
]
