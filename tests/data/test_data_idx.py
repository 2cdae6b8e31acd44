"""MNIST / Fashion-MNIST idx loaders, on the real offline files."""

import gzip
import hashlib

import numpy as np
import pytest

from sparsejax.data import idx
from sparsejax.data import load_dataset

# md5 of the uncompressed official files (shared/data/README.md).
MNIST_TRAIN_LABELS_MD5 = "a25bea736e30d166cdddb491f175f624"
MNIST_TEST_LABELS_MD5 = "27ae3e4e09519cfbb04c329615203637"


def _idx_bytes(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def mnist(shared_data_dir):
  return load_dataset("mnist", shared_data_dir)


def test_mnist_shapes_and_dtypes(mnist):
  train, test = mnist
  assert train.x.shape == (60000, 28, 28, 1) and test.x.shape == (10000, 28, 28, 1)
  assert train.y.shape == (60000,) and test.y.shape == (10000,)
  assert train.x.dtype == np.float32 and train.y.dtype == np.int32
  assert train.num_classes == 10 and train.name == "mnist" and train.groups is None


def test_mnist_labels_are_the_official_files(mnist, shared_data_dir):
  """Labels re-encoded as idx hash to the official md5 of the uncompressed file."""
  train, test = mnist
  assert hashlib.md5(_idx_bytes(train.y)).hexdigest() == MNIST_TRAIN_LABELS_MD5
  assert hashlib.md5(_idx_bytes(test.y)).hexdigest() == MNIST_TEST_LABELS_MD5
  raw = gzip.open(shared_data_dir / "mnist" / "train-labels-idx1-ubyte.gz").read()
  assert hashlib.md5(raw).hexdigest() == MNIST_TRAIN_LABELS_MD5


def test_mnist_labels_balanced(mnist):
  counts = np.bincount(mnist[0].y, minlength=10)
  assert counts.sum() == 60000 and counts.min() > 5000 and counts.max() < 7000
  assert set(np.unique(mnist[1].y)) == set(range(10))


@pytest.mark.slow
def test_mnist_standardised(mnist):
  x = mnist[0].x
  assert abs(float(x.mean(dtype=np.float64))) < 1e-3
  assert abs(float(x.std(dtype=np.float64)) - 1.0) < 1e-3


def test_unstandardised_is_unit_range(shared_data_dir):
  test = load_dataset("mnist", shared_data_dir, split="test", standardize=False)
  assert test.x.min() == 0.0 and test.x.max() == 1.0
  assert abs(float(test.x.mean()) - 0.1325) < 0.005  # official test-split mean


def test_parse_idx_roundtrip_and_errors(tmp_path):
  a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  raw = _idx_bytes(a)
  np.testing.assert_array_equal(idx.parse_idx(raw), a)
  (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
  (tmp_path / "a").write_bytes(raw)
  np.testing.assert_array_equal(idx.read_idx(tmp_path / "a.gz"), a)
  np.testing.assert_array_equal(idx.read_idx(tmp_path / "a"), a)
  with pytest.raises(ValueError, match="magic"):
    idx.parse_idx(b"\x01\x00\x08\x01" + raw[4:])
  with pytest.raises(ValueError, match="payload"):
    idx.parse_idx(raw[:-1])


def test_fashion_mnist_missing_lists_every_place(tmp_path, monkeypatch):
  monkeypatch.setattr(idx, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system")
  with pytest.raises(FileNotFoundError) as e:
    load_dataset("fashion_mnist", tmp_path / "data")
  msg = str(e.value)
  for place in (tmp_path / "data" / "fashion_mnist", tmp_path / "data" / "fashion-mnist",
                tmp_path / "system"):
    assert str(place) in msg
  assert "apt-get install -y dataset-fashion-mnist" in msg
  assert "source='tfds'" in msg


@pytest.mark.skipif(not idx.FASHION_MNIST_SYSTEM_DIR.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package(tmp_path):
  train = load_dataset("fashion_mnist", tmp_path, split="train")  # falls back to /usr/share
  assert train.x.shape == (60000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(train.y), np.full(10, 6000))
  assert abs(float(train.x.mean(dtype=np.float64))) < 1e-3
