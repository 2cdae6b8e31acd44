"""Damaged, truncated or inconsistent dataset files: one error naming the file.

Each loader reads a small valid file built here, then the same file damaged;
the error must be a DatasetFileError whose message has the absolute path and
says where a good copy comes from.
"""

import gzip
import io

import numpy as np
import pytest

from sparsejax.data import cifar10
from sparsejax.data import femnist_writers
from sparsejax.data import load_dataset
from sparsejax.data import read_idx
from sparsejax.data.paths import DatasetFileError
from tests.data.test_data_cifar10 import _make_tarball
from tests.data.test_data_idx import _idx_bytes

N_TEST = 10000  # MNIST's official test size, which the idx loader insists on


def _assert_names(error, path, *hints):
  msg = str(error.value)
  assert str(path) in msg
  assert "To get a good copy" in msg and "SPARSEJAX_DATA_DIR" in msg
  for hint in hints:
    assert hint in msg


def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _flip_byte(path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


# --- MNIST / Fashion-MNIST (idx) ---------------------------------------------

IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def _write_idx_pair(directory, num_images=N_TEST, num_labels=N_TEST):
  directory.mkdir(parents=True, exist_ok=True)
  images = np.zeros((num_images, 28, 28), np.uint8)
  labels = np.arange(num_labels) % 10
  (directory / IMAGES).write_bytes(gzip.compress(_idx_bytes(images), 1))
  (directory / LABELS).write_bytes(gzip.compress(_idx_bytes(labels), 1))


def _short_payload(path):
  """A valid gzip whose idx header promises more bytes than follow."""
  raw = gzip.decompress(path.read_bytes())
  path.write_bytes(gzip.compress(raw[:-28 * 28]))


@pytest.fixture
def mnist_dir(tmp_path):
  _write_idx_pair(tmp_path / "data" / "mnist")
  return tmp_path / "data" / "mnist"


def test_built_mnist_files_load(mnist_dir):
  test = load_dataset("mnist", mnist_dir.parent, "test")
  assert test.x.shape == (N_TEST, 28, 28, 1)
  np.testing.assert_array_equal(test.y, np.arange(N_TEST) % 10)


@pytest.mark.parametrize("damage", [_truncate, _flip_byte, _short_payload])
@pytest.mark.parametrize("name", [IMAGES, LABELS])
def test_damaged_mnist_file(mnist_dir, name, damage):
  damage(mnist_dir / name)
  with pytest.raises(DatasetFileError) as e:
    load_dataset("mnist", mnist_dir.parent, "test")
  _assert_names(e, mnist_dir / name, "cvdf-datasets/mnist", "source='tfds'")


@pytest.mark.parametrize("num_images,num_labels,bad", [
    (N_TEST - 1, N_TEST, IMAGES),  # consistent header, an example short
    (N_TEST, N_TEST - 10, LABELS),  # labels and images disagree
])
def test_mnist_with_too_few_examples(tmp_path, num_images, num_labels, bad):
  _write_idx_pair(tmp_path / "mnist", num_images, num_labels)
  with pytest.raises(DatasetFileError, match=f"expected the {N_TEST}") as e:
    load_dataset("mnist", tmp_path, "test")
  _assert_names(e, tmp_path / "mnist" / bad)


def test_damaged_fashion_mnist_file(tmp_path):
  directory = tmp_path / "fashion_mnist"
  _write_idx_pair(directory)
  _truncate(directory / LABELS)
  with pytest.raises(DatasetFileError) as e:
    load_dataset("fashion_mnist", tmp_path, "test")
  _assert_names(e, directory / LABELS,
                "apt-get install -y dataset-fashion-mnist", "source='tfds'")


def test_read_idx_names_a_truncated_file(mnist_dir):
  _truncate(mnist_dir / LABELS)
  with pytest.raises(DatasetFileError) as e:
    read_idx(mnist_dir / LABELS)
  _assert_names(e, mnist_dir / LABELS, "cvdf-datasets/mnist")
  assert isinstance(e.value, ValueError) and isinstance(e.value, OSError)


# --- FEMNIST (npz) -----------------------------------------------------------

def _femnist_arrays(n=12, writers=3):
  rng = np.random.default_rng(0)
  arrays = {"writers": np.array([f"w{i}" for i in range(writers)])}
  for s in ("train", "test"):
    arrays[f"{s}_x"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    arrays[f"{s}_y"] = (np.arange(n) % 62).astype(np.uint8)
    arrays[f"{s}_writer"] = (np.arange(n) % writers).astype(np.int32)
  return arrays


def _write_npz(tmp_path, **changes):
  arrays = {k: v for k, v in {**_femnist_arrays(), **changes}.items()
            if v is not None}
  path = tmp_path / "data" / "femnist" / "femnist_subset.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, **arrays)
  return path


def test_built_femnist_file_loads(tmp_path):
  _write_npz(tmp_path)
  train, test = load_dataset("femnist", tmp_path / "data")
  assert train.x.shape == test.x.shape == (12, 28, 28, 1)
  assert femnist_writers(tmp_path / "data").tolist() == ["w0", "w1", "w2"]


def _flip_pixel(path):
  """Flips one pixel byte of ``train_x`` (the zip's CRC no longer matches)."""
  data = bytearray(path.read_bytes())
  data[data.index(_femnist_arrays()["train_x"].tobytes()[:64]) + 9] ^= 0xFF
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage,match", [
    (_truncate, "BadZipFile"),
    (_flip_byte, None),
    (_flip_pixel, "CRC"),
])
def test_damaged_femnist_file(tmp_path, damage, match):
  path = _write_npz(tmp_path)
  damage(path)
  with pytest.raises(DatasetFileError, match=match) as e:
    load_dataset("femnist", tmp_path / "data")
  _assert_names(e, path, "TalwalkarLab/leaf", "'emnist'")


@pytest.mark.parametrize("changes,match", [
    ({"test_y": None}, "test_y"),  # an array missing
    ({"train_y": np.zeros(11, np.uint8)}, "mismatched shapes"),
    ({"train_x": np.zeros((12, 32, 32), np.uint8)}, "uint8"),
])
def test_inconsistent_femnist_file(tmp_path, changes, match):
  path = _write_npz(tmp_path, **changes)
  with pytest.raises(DatasetFileError, match=match) as e:
    load_dataset("femnist", tmp_path / "data")
  _assert_names(e, path, "TalwalkarLab/leaf")


def test_femnist_writers_relative_path_named_absolute(tmp_path, monkeypatch):
  path = _write_npz(tmp_path, writers=None)
  monkeypatch.chdir(tmp_path)
  with pytest.raises(DatasetFileError, match="writers") as e:
    femnist_writers("data")
  _assert_names(e, path)


# --- CIFAR-10 (tarball of JPEGs) ---------------------------------------------

@pytest.fixture
def tarball(tmp_path):
  path = tmp_path / "data" / "cifar10" / cifar10.TARBALL
  path.parent.mkdir(parents=True)
  _make_tarball(path)
  return path


def test_built_tarball_loads(tarball, tmp_path):
  train = load_dataset("cifar10", tmp_path / "data", "train", use_cache=False)
  assert train.x.shape == (20, 32, 32, 3)


@pytest.mark.parametrize("damage", [_truncate, _flip_byte])
def test_damaged_tarball(tarball, tmp_path, damage):
  damage(tarball)
  with pytest.raises(DatasetFileError) as e:
    load_dataset("cifar10", tmp_path / "data", cache_dir=tmp_path / "cache")
  _assert_names(e, tarball, "cs.toronto.edu/~kriz/cifar.html",
                "source='tfds'")
  with pytest.raises(DatasetFileError):
    cifar10.list_image_folder_tarball(tarball)


def _jpeg(colour=(255, 0, 0)) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.new("RGB", (32, 32), colour).save(buf, "JPEG")
  return buf.getvalue()


@pytest.mark.parametrize("data", [b"not a jpeg", _jpeg()[:200]],
                         ids=["garbage", "truncated"])
def test_damaged_image_in_tarball_names_the_member(tmp_path, data):
  path = tmp_path / "cifar10_jpeg.tar.gz"
  _make_tarball(path, extra=[("train/cat/0002.jpg", data)])
  with pytest.raises(DatasetFileError) as e:
    load_dataset("cifar10", path, use_cache=False)
  _assert_names(e, f"{path} (train/cat/0002.jpg)", "source='tfds'")


def test_mixed_image_sizes_in_tarball(tmp_path):
  from PIL import Image
  buf = io.BytesIO()
  Image.new("RGB", (16, 16)).save(buf, "JPEG")
  path = tmp_path / "cifar10_jpeg.tar.gz"
  _make_tarball(path, extra=[("test/dog/0009.jpg", buf.getvalue())])
  with pytest.raises(DatasetFileError, match="mixed shapes") as e:
    load_dataset("cifar10", path, use_cache=False)
  _assert_names(e, path)


# --- AG News (csv) -----------------------------------------------------------

def _ag_news_rows(per_class=5) -> str:
  return "".join(f'"{c}","Title {c} {i}","Text {i} of class {c}."\n'
                 for i in range(per_class) for c in range(1, 5))


def _write_csv(tmp_path, content):
  path = tmp_path / "ag_news" / "test.csv"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  return path


def test_built_csv_loads(tmp_path):
  _write_csv(tmp_path, _ag_news_rows())
  train, test = load_dataset("ag_news", tmp_path)
  assert len(train.y) == 16 and len(test.y) == 4


@pytest.mark.parametrize("content,match", [
    # Cut after the last comma: still 3 columns, the last one empty.
    (_ag_news_rows().rsplit(",", 1)[0] + ",", "looks truncated"),
    (_ag_news_rows()[:-20], "unexpected end of data"),  # inside a quote
    (_ag_news_rows().encode() + b'"1","caf\xe9","x"\n', "UnicodeDecodeError"),
    (_ag_news_rows() + '"2","no description"\n', "line 21: expected 3 columns"),
    (_ag_news_rows() + '"5","t","d"\n', "line 21: class '5' not in 1-4"),
    ("", "no rows"),
])
def test_damaged_csv(tmp_path, content, match):
  path = _write_csv(tmp_path, content)
  with pytest.raises(DatasetFileError, match=match) as e:
    load_dataset("ag_news", tmp_path)
  _assert_names(e, path, "ag_news_subset", "1509.01626")
