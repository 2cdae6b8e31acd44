"""load_dataset dispatch, data-directory resolution, errors, and the tfds path."""

import sys

import numpy as np
import pytest

from sparsejax import data as sjd
from sparsejax.data import load_dataset
from sparsejax.data import paths


def test_default_data_dir_is_beside_the_repo(monkeypatch):
  monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
  root, why = paths.resolve_data_dir(None)
  repo = paths.pathlib.Path(sjd.__file__).resolve().parents[2]
  assert root == repo.parent / "shared" / "data" and "default" in why


def test_env_var_then_argument_precedence(tmp_path, monkeypatch):
  monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "env"))
  assert paths.resolve_data_dir(None)[0] == tmp_path / "env"
  assert paths.resolve_data_dir(tmp_path / "arg")[0] == tmp_path / "arg"
  with pytest.raises(FileNotFoundError) as e:
    load_dataset("femnist")
  assert str(tmp_path / "env" / "femnist" / "femnist_subset.npz") in str(e.value)
  assert "$SPARSEJAX_DATA_DIR" in str(e.value)


def test_cache_dir_resolution(tmp_path, monkeypatch):
  monkeypatch.delenv(paths.CACHE_DIR_ENV, raising=False)
  assert paths.resolve_cache_dir() == paths.pathlib.Path.home() / ".cache" / "sparsejax"
  monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path))
  assert paths.resolve_cache_dir() == tmp_path
  assert paths.resolve_cache_dir(tmp_path / "x") == tmp_path / "x"


@pytest.mark.parametrize("name,expected", [
    ("mnist", "mnist/train-images-idx3-ubyte.gz"),
    ("femnist", "femnist/femnist_subset.npz"),
    ("ag_news", "ag_news/test.csv"),
    ("cifar10", "cifar10/cifar10_jpeg.tar.gz"),
])
def test_missing_data_message(tmp_path, name, expected):
  with pytest.raises(FileNotFoundError) as e:
    load_dataset(name, tmp_path / "nowhere")
  msg = str(e.value)
  assert str(tmp_path / "nowhere" / expected).split("/train-images")[0] in msg
  assert "data_dir argument" in msg and "shared/data" in msg
  assert "SPARSEJAX_DATA_DIR" in msg
  if name != "femnist":
    assert "source='tfds'" in msg and "sparsejax[tfds]" in msg


def test_bad_names_and_sources():
  with pytest.raises(ValueError, match="unknown dataset"):
    load_dataset("imagenet")
  with pytest.raises(ValueError, match="source"):
    load_dataset("mnist", source="http")
  with pytest.raises(ValueError, match="tfds"):
    load_dataset("emnist")
  with pytest.raises(ValueError, match="no tfds source"):
    load_dataset("synthetic", source="tfds")
  with pytest.raises(ValueError, match="split"):
    load_dataset("synthetic", split="validation")


def test_tfds_missing_gives_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(ImportError, match=r"pip install 'sparsejax\[tfds\]'"):
    load_dataset("mnist", source="tfds")


@pytest.fixture
def tfds_mock():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12):
    yield tfds


def test_tfds_mnist_and_cifar10(tfds_mock):
  train, test = load_dataset("mnist", source="tfds")
  assert train.x.shape == (12, 28, 28, 1) and train.x.dtype == np.float32
  assert train.y.dtype == np.int32 and train.num_classes == 10
  raw = tfds_mock.data_source("mnist", split="test")
  expected = (np.stack([raw[i]["image"] for i in range(12)]) / 255.0 - 0.1307) / 0.3081
  np.testing.assert_allclose(test.x, expected, atol=1e-5)
  cifar = load_dataset("cifar10", source="tfds", split="train")
  assert cifar.x.shape == (12, 32, 32, 3)


def test_tfds_emnist_is_transposed_upright(tfds_mock):
  ds = load_dataset("emnist", source="tfds", split="train", standardize=False)
  assert ds.num_classes == 62 and ds.x.shape == (12, 28, 28, 1)
  raw = tfds_mock.data_source("emnist/byclass", split="train")[0]["image"]
  np.testing.assert_allclose(ds.x[0, :, :, 0], raw[:, :, 0].T / 255.0, atol=1e-6)


def test_tfds_ag_news_subset(tfds_mock):
  train, test = load_dataset("ag_news_subset", source="tfds", max_length=8)
  assert train.x.shape == (12, 8) and train.x.dtype == np.int32
  assert train.num_classes == 4 and train.vocab[0] == "<pad>"
  assert 0 <= test.x.min() and test.x.max() < len(train.vocab)
  assert set(np.unique(train.y)) <= {0, 1, 2, 3}
