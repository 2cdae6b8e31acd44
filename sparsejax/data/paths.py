"""Where datasets are read from and where decoded arrays are cached.

Data directory, first that is given wins:

1. the ``data_dir`` argument of a loader;
2. the environment variable ``SPARSEJAX_DATA_DIR``;
3. ``<repo root>/../shared/data``, i.e. ``shared/data`` beside the directory
   that holds the ``sparsejax`` package (the offline copies of the datasets).

Cache directory (decoded CIFAR-10 arrays): the ``cache_dir`` argument, else
``$SPARSEJAX_CACHE``, else ``~/.cache/sparsejax``. Never inside the repository.
"""

from __future__ import annotations

import os
import pathlib
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
  lines.append(
      f"  - use the offline copy: pass data_dir=..., set ${DATA_DIR_ENV}, or "
      f"place it at {DEFAULT_DATA_DIR} (layout in shared/data/README.md);")
  if extra_hint:
    lines.append(f"  - {extra_hint};")
  if tfds_name is not None:
    lines.append(
        f"  - on a machine with internet: load_dataset(..., source='tfds') "
        f"downloads '{tfds_name}' with tensorflow-datasets "
        "(pip install 'sparsejax[tfds]').")
  return FileNotFoundError("\n".join(lines))
