"""CIFAR-10 image-folder tarball: a tiny built tarball, then the real one."""

import io
import tarfile
import time

import numpy as np
import pytest

from sparsejax.data import cifar10
from sparsejax.data import load_dataset

# Solid colours survive JPEG almost exactly.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
           (255, 0, 255), (128, 128, 128), (255, 255, 255), (0, 0, 0), (64, 128, 192)]


def _make_tarball(path, per_class={"train": 2, "test": 1}, extra=()):
  from PIL import Image
  with tarfile.open(path, "w:gz") as tf:
    for split, n in per_class.items():
      for c, name in enumerate(cifar10.CLASSES):
        for i in range(n):
          buf = io.BytesIO()
          Image.new("RGB", (32, 32), COLOURS[c]).save(buf, "JPEG", quality=95)
          info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
          info.size = len(buf.getvalue())
          tf.addfile(info, io.BytesIO(buf.getvalue()))
    for name, data in extra:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def tiny(tmp_path):
  (tmp_path / "data" / "cifar10").mkdir(parents=True)
  _make_tarball(tmp_path / "data" / "cifar10" / cifar10.TARBALL,
                extra=[("README.txt", b"not an image")])
  return tmp_path


def test_tiny_tarball_decodes_in_class_order(tiny):
  train, test = load_dataset("cifar10", tiny / "data", cache_dir=tiny / "cache",
                             standardize=False)
  assert train.x.shape == (20, 32, 32, 3) and test.x.shape == (10, 32, 32, 3)
  np.testing.assert_array_equal(train.y, np.repeat(np.arange(10), 2))
  np.testing.assert_array_equal(test.y, np.arange(10))
  means = test.x.mean(axis=(1, 2)) * 255
  np.testing.assert_allclose(means, np.asarray(COLOURS, np.float32), atol=3)


def test_tiny_tarball_standardised_with_cifar_constants(tiny):
  raw = load_dataset("cifar10", tiny / "data", "test", cache_dir=tiny / "cache",
                     standardize=False)
  std = load_dataset("cifar10", tiny / "data", "test", cache_dir=tiny / "cache")
  mean, sd = (np.asarray(v, np.float32) for v in cifar10.dataset_lib.NORMALIZATION["cifar10"])
  np.testing.assert_allclose(std.x, (raw.x - mean) / sd, rtol=1e-5, atol=1e-5)


def test_cache_is_written_then_used(tiny, monkeypatch):
  cache = tiny / "cache"
  first = load_dataset("cifar10", tiny / "data", cache_dir=cache)
  files = sorted(p.name for p in (cache / "cifar10").iterdir())
  assert len(files) == 4 and all(f.endswith(".npy") for f in files)

  def no_decode(*a, **k):
    raise AssertionError("decoded again instead of reading the cache")
  monkeypatch.setattr(cifar10, "decode_image_folder_tarball", no_decode)
  second = load_dataset("cifar10", tiny / "data", cache_dir=cache)
  np.testing.assert_array_equal(first[0].x, second[0].x)
  # $SPARSEJAX_CACHE is the default cache location.
  monkeypatch.setenv("SPARSEJAX_CACHE", str(cache))
  load_dataset("cifar10", tiny / "data", "train")


def test_cache_key_changes_with_content(tiny):
  cache = tiny / "cache"
  load_dataset("cifar10", tiny / "data", cache_dir=cache)
  _make_tarball(tiny / "data" / "cifar10" / cifar10.TARBALL, {"train": 1, "test": 1})
  train = load_dataset("cifar10", tiny / "data", "train", cache_dir=cache)
  assert train.x.shape[0] == 10
  assert len(list((cache / "cifar10").iterdir())) == 8


def test_unknown_class_is_an_error(tmp_path):
  from PIL import Image
  buf = io.BytesIO()
  Image.new("RGB", (32, 32)).save(buf, "JPEG")
  path = tmp_path / "bad.tar.gz"
  with tarfile.open(path, "w:gz") as tf:
    info = tarfile.TarInfo("train/zebra/0000.jpg")
    info.size = len(buf.getvalue())
    tf.addfile(info, io.BytesIO(buf.getvalue()))
  with pytest.raises(ValueError, match="zebra"):
    cifar10.decode_image_folder_tarball(path)


def test_missing_cifar_names_the_paths(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    load_dataset("cifar10", tmp_path, cache_dir=tmp_path)
  assert str(tmp_path / "cifar10" / cifar10.TARBALL) in str(e.value)


@pytest.mark.slow
def test_real_tarball(shared_data_dir, tmp_path):
  """The real 60k-image tarball: full decode into a tmp cache, then reload."""
  train, test = load_dataset("cifar10", shared_data_dir, cache_dir=tmp_path)
  assert train.x.shape == (50000, 32, 32, 3) and test.x.shape == (10000, 32, 32, 3)
  np.testing.assert_array_equal(np.bincount(train.y), [5000] * 10)
  np.testing.assert_array_equal(np.bincount(test.y), [1000] * 10)
  sample = train.x[::10]
  mean = sample.mean(axis=(0, 1, 2), dtype=np.float64)
  std = sample.std(axis=(0, 1, 2), dtype=np.float64)
  np.testing.assert_allclose(mean, 0.0, atol=0.02)  # JPEG keeps the means
  np.testing.assert_allclose(std, 0.99, atol=0.02)  # and lowers std about 1%
  start = time.perf_counter()
  again = load_dataset("cifar10", shared_data_dir, "test", cache_dir=tmp_path)
  assert time.perf_counter() - start < 5.0  # from the cache, no decoding
  np.testing.assert_array_equal(again.x, test.x)
