"""load_dataset dispatch, data-directory resolution, errors, and the tfds path."""

import importlib.metadata
import sys

import numpy as np
import pytest

from sparsejax import data as sjd
from sparsejax.data import load_dataset
from sparsejax.data import paths
from sparsejax.data import tfds_source


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


def _tfds_installed() -> bool:
  try:
    importlib.metadata.distribution("tensorflow-datasets")
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


@pytest.fixture
def tfds_mock():
  """tfds' mock data (no network). Skipped only when tensorflow-datasets is
  not installed (it is in the ``test`` extra): an installed tfds that fails
  to import (a missing dependency) fails the test."""
  if not _tfds_installed():
    pytest.skip("tensorflow-datasets is not installed (pip install "
                "'sparsejax[test]')")
  tfds = tfds_source.import_tfds()  # the loader's own import, for real
  with tfds.testing.mock_data(num_examples=12):
    yield tfds


@pytest.mark.slow
def test_tfds_imports_when_installed():
  if not _tfds_installed():
    pytest.skip("tensorflow-datasets is not installed")
  tfds = tfds_source.import_tfds()
  # What load_tfds touches: the builders and the array-record data source.
  assert callable(tfds.data_source) and callable(tfds.testing.mock_data)
  for name in ("mnist", "cifar10", "emnist", "ag_news_subset"):
    assert tfds.builder_cls(name).name == name


def test_tfds_mnist_and_cifar10(tfds_mock):
  train, test = load_dataset("mnist", source="tfds")
  assert train.x.shape == (12, 28, 28, 1) and train.x.dtype == np.float32
  assert train.y.dtype == np.int32 and train.num_classes == 10
  raw = tfds_mock.data_source("mnist", split="test")
  expected = (np.stack([raw[i]["image"] for i in range(12)]) / 255.0 - 0.1307) / 0.3081
  np.testing.assert_allclose(test.x, expected, atol=1e-5)
  cifar_train, cifar_test = load_dataset("cifar10", source="tfds")
  for ds in (cifar_train, cifar_test):
    assert ds.x.shape == (12, 32, 32, 3) and ds.x.dtype == np.float32
    assert ds.y.shape == (12,) and ds.y.dtype == np.int32
    assert ds.num_classes == 10 and ds.name == "cifar10"
    assert 0 <= ds.y.min() and ds.y.max() < 10
  # Standardised with the fixed CIFAR-10 constants, per channel.
  raw = tfds_mock.data_source("cifar10", split="train")
  mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
  std = np.array([0.2470, 0.2435, 0.2616], np.float32)
  expected = (np.stack([raw[i]["image"] for i in range(12)]) / 255.0
              - mean) / std
  np.testing.assert_allclose(cifar_train.x, expected, atol=1e-5)


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


def test_sources_and_synthetic_stand_ins():
  assert sjd.SOURCES == ("files", "tfds", "synthetic")
  train, test = load_dataset("mnist", source="synthetic", num_train=30,
                             num_test=10)
  assert train.x.shape == (30, 28, 28, 1) and test.x.shape == (10, 28, 28, 1)
  assert train.num_classes == 10 and train.x.dtype == np.float32
  fem = load_dataset("femnist", source="synthetic", split="train",
                     num_train=600)
  assert fem.num_classes == 62 and fem.groups.shape == (600,)
  assert 200 < len(np.unique(fem.groups)) <= 300  # writers, for "groups"
  # The same arrays as load_synthetic with the stand-in's shape.
  direct = sjd.load_synthetic(split="train", num_train=30, num_test=10,
                              shape=(28, 28, 1), num_classes=10)
  np.testing.assert_array_equal(train.x, direct.x)
  with pytest.raises(ValueError, match="no stand-in for 'ag_news'"):
    load_dataset("ag_news", source="synthetic")
  with pytest.raises(ValueError, match=r"one of \('files', 'tfds', "
                     r"'synthetic'\), got 'web'"):
    load_dataset("mnist", source="web")
  with pytest.raises(ValueError, match="num_groups"):
    sjd.load_synthetic(num_groups=0)
