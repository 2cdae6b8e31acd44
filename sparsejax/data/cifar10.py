"""CIFAR-10 from an image-folder tarball of JPEGs, with an ``.npy`` cache.

The offline copy (``<data_dir>/cifar10/cifar10_jpeg.tar.gz``) holds
``{train,test}/<class>/NNNN.jpg``; class ids follow the official order in
:data:`CLASSES`. JPEG (quality 75) makes it slightly lossy (see
shared/data/README.md): report CIFAR-10 numbers from it as such.

Decoding 60,000 JPEGs takes several seconds, so the decoded uint8 arrays are
cached as ``.npy`` under the cache directory (``$SPARSEJAX_CACHE`` or
``~/.cache/sparsejax``, see :mod:`sparsejax.data.paths`), keyed by the
tarball's sha256, and memory-mapped on later loads. Images inside a split are
ordered by (class, file name), so the arrays are independent of tar order.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pathlib
import tarfile
import tempfile

import numpy as np

from sparsejax.data import dataset as dataset_lib
from sparsejax.data import paths

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
TARBALL = "cifar10_jpeg.tar.gz"
_CACHE_VERSION = 1
# Where good copies come from (keyword arguments of paths.missing_data_error
# and paths.reading).
_HOW_TO_GET = {
    "tfds_name": "cifar10",
    "extra_hint": (
        f"{TARBALL} is the official CIFAR-10 "
        "(https://www.cs.toronto.edu/~kriz/cifar.html) as JPEGs in "
        "{train,test}/<class>/NNNN.jpg; rebuild it from there")}


def _sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _parse_member(name: str) -> tuple[str, str, str] | None:
  """``(split, class, file)`` of ``[prefix/]split/class/file.jpg``, else None."""
  parts = pathlib.PurePosixPath(name).parts
  if len(parts) < 3 or not parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
    return None
  split, cls, fname = parts[-3:]
  if split not in dataset_lib.SPLITS:
    return None
  return split, cls, fname


def list_image_folder_tarball(path: str | os.PathLike) -> dict[str, dict[str, int]]:
  """``{split: {class: number of images}}`` without decoding anything."""
  counts: dict[str, dict[str, int]] = {}
  with paths.reading(path, "cifar10", **_HOW_TO_GET), \
      tarfile.open(path, "r:*") as tf:
    for member in tf:
      parsed = _parse_member(member.name) if member.isfile() else None
      if parsed:
        split, cls, _ = parsed
        counts.setdefault(split, {}).setdefault(cls, 0)
        counts[split][cls] += 1
  return counts


def decode_image_folder_tarball(path: str | os.PathLike,
                                classes: tuple[str, ...] = CLASSES,
                                splits: tuple[str, ...] = dataset_lib.SPLITS
                                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Decodes ``{split}/<class>/*.jpg`` into ``{split: (uint8 NHWC, int32 labels)}``.

  One pass over the (gzip) tarball; images are RGB. Raises DatasetFileError
  (a ValueError) for a damaged tarball or image, a class directory not in
  ``classes``, mixed image sizes, or an empty split.
  """
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("decoding the CIFAR-10 JPEGs needs Pillow: "
                      "pip install pillow") from e

  class_id = {c: i for i, c in enumerate(classes)}
  raw: dict[str, list[tuple[int, str, str, bytes]]] = {s: [] for s in splits}
  reading = functools.partial(paths.reading, path, "cifar10", **_HOW_TO_GET)
  with reading(), tarfile.open(path, "r:*") as tf:
    for member in tf:
      parsed = _parse_member(member.name) if member.isfile() else None
      if not parsed or parsed[0] not in raw:
        continue
      split, cls, fname = parsed
      if cls not in class_id:
        raise ValueError(f"unknown class directory {cls!r} in {member.name}")
      raw[split].append((class_id[cls], fname, member.name,
                         tf.extractfile(member).read()))

  def decode(name: str, data: bytes) -> np.ndarray:
    with reading(part=name), Image.open(io.BytesIO(data)) as im:
      if im.mode != "RGB":
        im = im.convert("RGB")
      return np.asarray(im, dtype=np.uint8)

  # (Threads do not help: 32x32 decodes are too short to amortise the GIL.)
  items = {split: [(r[0], r[1], decode(r[2], r[3])) for r in rows]
           for split, rows in raw.items()}
  out = {}
  with reading():
    for split, rows in items.items():
      if not rows:
        raise ValueError(f"no images under {split}/")
      rows.sort(key=lambda r: (r[0], r[1]))
      shapes = {r[2].shape for r in rows}
      if len(shapes) != 1:
        raise ValueError(f"{split} images have mixed shapes {sorted(shapes)}")
      x = np.stack([r[2] for r in rows])
      y = np.asarray([r[0] for r in rows], np.int32)
      out[split] = (x, y)
  return out


def _save_atomic(path: pathlib.Path, array: np.ndarray) -> None:
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.save(f, array)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def load_cifar10_arrays(tarball: str | os.PathLike, cache_dir=None,
                        use_cache: bool = True
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Decoded uint8 arrays of both splits, from the cache when present."""
  tarball = pathlib.Path(tarball)
  if not use_cache:
    return decode_image_folder_tarball(tarball)
  cache = paths.resolve_cache_dir(cache_dir) / "cifar10"
  key = f"v{_CACHE_VERSION}_{_sha256(tarball)[:16]}"
  files = {s: (cache / f"{key}_{s}_x.npy", cache / f"{key}_{s}_y.npy")
           for s in dataset_lib.SPLITS}
  if all(p.is_file() for pair in files.values() for p in pair):
    try:
      arrays = {s: (np.load(fx, mmap_mode="r"), np.load(fy))
                for s, (fx, fy) in files.items()}
      if all(x.shape[0] == y.shape[0] for x, y in arrays.values()):
        return arrays
    except (OSError, ValueError):
      pass
    # A damaged cache entry: decode again and overwrite it.
  arrays = decode_image_folder_tarball(tarball)
  cache.mkdir(parents=True, exist_ok=True)
  for s, (fx, fy) in files.items():
    _save_atomic(fx, arrays[s][0])
    _save_atomic(fy, arrays[s][1])
  return arrays


def load_cifar10(data_dir=None, split: str | None = None, *,
                 standardize: bool = True, cache_dir=None, use_cache: bool = True):
  """CIFAR-10 (JPEG image-folder tarball), ``(N, 32, 32, 3)`` float32.

  Args:
    data_dir: directory holding ``cifar10/cifar10_jpeg.tar.gz``, or the
      ``cifar10`` folder itself, or the tarball path; see
      :func:`sparsejax.data.paths.resolve_data_dir` for the default.
    split: ``None`` for ``(train, test)``, or ``"train"`` / ``"test"``.
    standardize: per-channel standardisation (official CIFAR-10 constants).
    cache_dir: where decoded arrays are cached (default ``$SPARSEJAX_CACHE``
      or ``~/.cache/sparsejax``).
    use_cache: set False to always decode (nothing is written).
  """
  splits = dataset_lib.check_split(split)
  root, why = paths.resolve_data_dir(data_dir)
  candidates = [(root / "cifar10" / TARBALL, why)]
  if data_dir is not None:
    candidates += [(root / TARBALL, why), (root, why)]
  tarball = next((p for p, _ in candidates if p.is_file()), None)
  if tarball is None:
    raise paths.missing_data_error(f"cifar10 ({TARBALL})", candidates,
                                   tfds_name="cifar10")
  arrays = load_cifar10_arrays(tarball, cache_dir=cache_dir, use_cache=use_cache)
  out = tuple(
      dataset_lib.images_to_dataset(
          arrays[s][0], arrays[s][1], name="cifar10", num_classes=10,
          standardize_as="cifar10" if standardize else None)
      for s in splits)
  return out if split is None else out[0]
