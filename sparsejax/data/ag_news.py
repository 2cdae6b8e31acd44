"""AG News topic classification (4 classes: World, Sports, Business, Sci/Tech).

Offline, only the official *test* split exists
(``<data_dir>/ag_news/test.csv``: 7,600 rows, 1,900 per class, columns
``"class(1-4)","title","description"`` without header). :func:`load_ag_news`
therefore splits those rows itself:

* stratified by class and seeded (``seed=0``): in each class the rows are
  permuted with ``np.random.default_rng(seed)`` and the first
  ``round(n_c * test_fraction)`` go to test (default 0.2: 6,080 train /
  1,520 test, 1,520 / 380 per class); each part keeps file order;
* text = ``title + " " + description``, tokenized by
  :func:`sparsejax.data.text.tokenize`; the vocabulary is built from the
  *train* part only (test words not in it become ``<unk>``);
* labels ``1..4`` become ``0..3``; tokens are int32 ``(N, max_length)``.

With tensorflow-datasets (``source="tfds"``, ``ag_news_subset``) the official
120,000 / 7,600 split is used instead.
"""

from __future__ import annotations

import csv
import io
import pathlib

import numpy as np

from sparsejax.data import dataset as dataset_lib
from sparsejax.data import paths
from sparsejax.data import text as text_lib

CSV = "test.csv"
CLASSES = ("World", "Sports", "Business", "Sci/Tech")
# Where good copies come from (keyword arguments of paths.missing_data_error
# and paths.reading).
_HOW_TO_GET = {
    "tfds_name": "ag_news_subset",
    "extra_hint": (
        f"{CSV} is the test split of the original ag_news_csv archive (Zhang "
        "et al. 2015, https://arxiv.org/abs/1509.01626), the one tfds "
        "downloads for 'ag_news_subset'")}


def read_ag_news_csv(path) -> tuple[list[str], np.ndarray]:
  """``(texts, labels 0-3)`` from an AG News csv (title + " " + description).

  Raises DatasetFileError naming the file when it is not UTF-8, a row is not
  ``"class(1-4)","title","description"``, there are no rows, or the last row
  has no line end (a truncated file).
  """
  texts, labels = [], []
  with paths.reading(path, "ag_news", **_HOW_TO_GET):
    with open(path, newline="", encoding="utf-8") as f:
      content = f.read()
    rows = csv.reader(io.StringIO(content, newline=""), strict=True)
    for row in rows:
      if len(row) != 3:
        raise ValueError(f"line {rows.line_num}: expected 3 columns, got "
                         f"{len(row)}")
      if row[0] not in ("1", "2", "3", "4"):
        raise ValueError(f"line {rows.line_num}: class {row[0]!r} not in 1-4")
      labels.append(int(row[0]) - 1)
      texts.append(row[1] + " " + row[2])
    if not labels:
      raise ValueError("no rows")
    if not content.endswith("\n"):
      raise ValueError("the last row has no line end, so the file looks "
                       "truncated (a complete csv ends with a newline)")
  return texts, np.asarray(labels, np.int32)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Sorted ``(train_idx, test_idx)``, the same fraction of every class in test."""
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(len(idx) * test_fraction))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def make_text_datasets(train_texts, train_labels, test_texts, test_labels, *,
                       name: str, num_classes: int, max_length: int,
                       vocab_size: int | None, min_count: int = 1):
  """Tokenizes both parts with a vocabulary built from the train part."""
  train_tokens = [text_lib.tokenize(t) for t in train_texts]
  test_tokens = [text_lib.tokenize(t) for t in test_texts]
  vocab = text_lib.build_vocab(train_tokens, max_size=vocab_size,
                               min_count=min_count)
  make = lambda tokens, labels: dataset_lib.Dataset(
      x=text_lib.token_ids(tokens, vocab, max_length),
      y=np.asarray(labels, np.int32), num_classes=num_classes, name=name,
      vocab=vocab)
  return make(train_tokens, train_labels), make(test_tokens, test_labels)


def load_ag_news(data_dir=None, split: str | None = None, *,
                 test_fraction: float = 0.2, seed: int = 0, max_length: int = 64,
                 vocab_size: int | None = 20000, min_count: int = 1):
  """AG News from the offline test csv, split into train/test (see module doc).

  Args:
    data_dir: directory holding ``ag_news/test.csv`` (or the csv itself).
    split: ``None`` for ``(train, test)``, or ``"train"`` / ``"test"``.
    test_fraction: fraction of each class held out as test.
    seed: seed of the split.
    max_length: tokens kept per text (truncate / pad with 0).
    vocab_size: vocabulary cap including ``<pad>`` and ``<unk>``.
    min_count: words seen fewer times in train are ``<unk>``.

  Returns:
    ``(train, test)`` Datasets (``vocab`` set, ``num_classes=4``), or one.
  """
  splits = dataset_lib.check_split(split)
  root, why = paths.resolve_data_dir(data_dir)
  candidates = [(root / "ag_news" / CSV, why)]
  if data_dir is not None:
    candidates += [(root / CSV, why), (root, why)]
  path = next((p for p, _ in candidates if pathlib.Path(p).is_file()), None)
  if path is None:
    raise paths.missing_data_error(f"ag_news ({CSV})", candidates,
                                   tfds_name="ag_news_subset")
  texts, labels = read_ag_news_csv(path)
  train_idx, test_idx = stratified_split(labels, test_fraction, seed)
  train, test = make_text_datasets(
      [texts[i] for i in train_idx], labels[train_idx],
      [texts[i] for i in test_idx], labels[test_idx],
      name="ag_news", num_classes=len(CLASSES), max_length=max_length,
      vocab_size=vocab_size, min_count=min_count)
  out = {"train": train, "test": test}
  return (train, test) if split is None else out[splits[0]]
