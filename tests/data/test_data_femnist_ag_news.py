"""FEMNIST (writer groups) and AG News (own split, tokenizer) on the real files."""

import numpy as np
import pytest

from sparsejax.data import ag_news
from sparsejax.data import femnist_writers
from sparsejax.data import load_dataset
from sparsejax.data import text


@pytest.fixture(scope="module")
def fem(shared_data_dir):
  return load_dataset("femnist", shared_data_dir)


def test_femnist_shapes_and_writers(fem, shared_data_dir):
  train, test = fem
  assert train.x.shape == (41434, 28, 28, 1) and test.x.shape == (4756, 28, 28, 1)
  assert train.num_classes == test.num_classes == 62
  assert train.groups.dtype == np.int32 and train.groups.shape == train.y.shape
  assert len(np.unique(train.groups)) == 300 and len(np.unique(test.groups)) == 300
  assert train.groups.min() == 0 and train.groups.max() == 299
  assert len(femnist_writers(shared_data_dir)) == 300
  assert train.y.max() == 61 and train.y.min() == 0
  assert abs(float(train.x.mean(dtype=np.float64))) < 1e-3


def test_femnist_is_non_iid_by_writer(fem):
  train = fem[0]
  sizes = np.bincount(train.groups)
  assert sizes.min() >= 1 and sizes.max() > 2 * np.median(sizes) > 4 * sizes.min()  # unequal clients
  # Label distributions differ between writers (not an IID shuffle).
  hist = lambda w: np.bincount(train.y[train.groups == w], minlength=62) / sizes[w]
  assert np.abs(hist(0) - hist(1)).sum() > 0.2


def test_femnist_inverted_background_zero(shared_data_dir):
  test = load_dataset("femnist", shared_data_dir, split="test", standardize=False)
  assert test.x.min() >= 0.0 and test.x.max() <= 1.0
  corners = test.x[:, [0, 0, -1, -1], [0, -1, 0, -1], 0]
  assert corners.mean() < 0.05  # background is 0 after x = 1 - x / 255
  assert test.x.mean() < 0.1


@pytest.fixture(scope="module")
def news(shared_data_dir):
  return load_dataset("ag_news", shared_data_dir)


def test_ag_news_split(news):
  train, test = news
  assert train.x.shape == (6080, 64) and test.x.shape == (1520, 64)
  assert train.x.dtype == np.int32 and train.num_classes == 4
  np.testing.assert_array_equal(np.bincount(train.y), [1520] * 4)
  np.testing.assert_array_equal(np.bincount(test.y), [380] * 4)


def test_ag_news_tokens_in_vocab(news):
  train, test = news
  vocab = train.vocab
  assert vocab[0] == "<pad>" and vocab[1] == "<unk>" and test.vocab is vocab
  for ds in news:
    assert ds.x.min() == 0 and ds.x.max() < len(vocab)
  assert (train.x != 1).all()  # no <unk> in the part the vocabulary came from
  assert 0.85 < (test.x[:, 0] > 1).mean() < 1.0  # most test words are known
  # Padding only at the end of each row.
  nz = train.x != 0
  assert not np.any(~nz[:, :-1] & nz[:, 1:])
  # Vocabulary comes from the train texts (a few words occur only after the
  # max_length cut, so not every id shows up in the truncated tokens).
  assert len(np.unique(train.x)) > 0.95 * len(vocab)


@pytest.mark.slow
def test_ag_news_split_is_seeded_and_configurable(shared_data_dir):
  a = load_dataset("ag_news_subset", shared_data_dir, split="test", max_length=16)
  b = load_dataset("ag_news", shared_data_dir, split="test", max_length=16)
  c = load_dataset("ag_news", shared_data_dir, split="test", max_length=16, seed=1)
  assert a.x.shape == (1520, 16)
  np.testing.assert_array_equal(a.x, b.x)
  assert not np.array_equal(a.x, c.x)
  tr, te = load_dataset("ag_news", shared_data_dir, test_fraction=0.5, vocab_size=100)
  assert len(tr.y) == len(te.y) == 3800 and len(tr.vocab) == 100


def test_stratified_split_disjoint_cover():
  labels = np.repeat(np.arange(4), 25)
  tr, te = ag_news.stratified_split(labels, 0.2, seed=3)
  assert len(np.intersect1d(tr, te)) == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(100))
  np.testing.assert_array_equal(np.bincount(labels[te]), [5] * 4)


def test_tokenizer_and_encode():
  toks = text.tokenize("Fears for T N pension -- #36;10 million\\team, Inc.'s &lt;b&gt;")
  assert toks == ["fears", "for", "t", "n", "pension", "10", "million", "team",
                  "inc", "s", "b"]
  vocab = text.build_vocab([["b", "a", "a"], ["c", "b", "a"]], max_size=4)
  assert vocab.tolist() == ["<pad>", "<unk>", "a", "b"]
  ids = text.token_ids([["a", "z", "b"], ["b"] * 5], vocab, max_length=4)
  np.testing.assert_array_equal(ids, [[2, 1, 3, 0], [3, 3, 3, 3]])
