"""Where datasets are read from and where decoded arrays are cached.

Data directory, first that is given wins:

1. the ``data_dir`` argument of a loader;
2. the environment variable ``SPARSEJAX_DATA_DIR``;
3. ``<repo root>/../shared/data``, i.e. ``shared/data`` beside the directory
   that holds the ``sparsejax`` package (the offline copies of the datasets).

Cache directory (decoded CIFAR-10 arrays): the ``cache_dir`` argument, else
``$SPARSEJAX_CACHE``, else ``~/.cache/sparsejax``. Never inside the repository.

A missing file raises FileNotFoundError (:func:`missing_data_error`); a file
that is there but damaged, truncated or of the wrong shape raises
:class:`DatasetFileError` (:func:`reading`). Both messages name the paths and
say how to get a good copy.
"""

from __future__ import annotations

import contextlib
import csv
import os
import pathlib
import tarfile
import zipfile
import zlib
from collections.abc import Sequence

DATA_DIR_ENV = "SPARSEJAX_DATA_DIR"
CACHE_DIR_ENV = "SPARSEJAX_CACHE"

# sparsejax/data/paths.py -> parents[2] is the directory holding the package.
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = _REPO_ROOT.parent / "shared" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None
                     ) -> tuple[pathlib.Path, str]:
  """The data directory to use and a phrase saying where it came from."""
  if data_dir is not None:
    return pathlib.Path(data_dir).expanduser(), "data_dir argument"
  env = os.environ.get(DATA_DIR_ENV)
  if env:
    return pathlib.Path(env).expanduser(), f"${DATA_DIR_ENV}"
  return DEFAULT_DATA_DIR, "default <repo>/../shared/data"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """The cache directory (not created here)."""
  if cache_dir is not None:
    return pathlib.Path(cache_dir).expanduser()
  env = os.environ.get(CACHE_DIR_ENV)
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path("~/.cache/sparsejax").expanduser()


def missing_data_error(dataset: str, looked: Sequence[tuple[pathlib.Path, str]],
                       *, tfds_name: str | None = None,
                       extra_hint: str | None = None) -> FileNotFoundError:
  """A FileNotFoundError naming every path looked at and how to get the data."""
  lines = [f"{dataset}: data files not found. Looked at:"]
  lines += [f"  {p}  ({why})" for p, why in looked]
  lines.append("To get the data, either:")
  lines += _how_to_get(tfds_name, extra_hint)
  return FileNotFoundError("\n".join(lines))


def _how_to_get(tfds_name: str | None, extra_hint: str | None) -> list[str]:
  """The lines of a message that say where a good copy comes from."""
  lines = [
      f"  - the offline copy: pass data_dir=..., set ${DATA_DIR_ENV}, or "
      f"place it at {DEFAULT_DATA_DIR} (layout and checksums in "
      "shared/data/README.md);"]
  if extra_hint:
    lines.append(f"  - {extra_hint};")
  if tfds_name is not None:
    lines.append(
        f"  - on a machine with internet: load_dataset(..., source='tfds') "
        f"downloads '{tfds_name}' with tensorflow-datasets "
        "(pip install 'sparsejax[tfds]').")
  return lines


class DatasetFileError(OSError, ValueError):
  """A dataset file that is there but damaged, truncated or not as expected.

  Both an OSError and a ValueError (like :class:`io.UnsupportedOperation`), so
  code that caught the errors of reading or of checking a file still does.
  """


# What reading and decoding a damaged file raises (gzip.BadGzipFile and PIL's
# UnidentifiedImageError are OSErrors; UnicodeDecodeError is a ValueError).
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
                tarfile.TarError, zlib.error, csv.Error)


@contextlib.contextmanager
def reading(path: str | os.PathLike, dataset: str, *, part: str | None = None,
            tfds_name: str | None = None, extra_hint: str | None = None):
  """Re-raises what reading ``path`` in the block raises as DatasetFileError.

  Wrap the reading and decoding of one dataset file and the checks of what it
  holds (a check raises a plain ValueError saying what is wrong). The message
  names the absolute path (and ``part``, e.g. a tar member), the error, and how
  to get a good copy (the hints of :func:`missing_data_error`). A
  DatasetFileError from an inner block passes unchanged.
  """
  try:
    yield
  except DatasetFileError:
    raise
  except _READ_ERRORS as e:
    where = str(pathlib.Path(path).absolute())
    if part is not None:
      where += f" ({part})"
    lines = [f"{dataset}: cannot read {where}: {type(e).__name__}: {e}",
             "The file is damaged, truncated or not in the expected format. "
             "To get a good copy, either:"]
    lines += _how_to_get(tfds_name, extra_hint)
    raise DatasetFileError("\n".join(lines)) from e
