"""Fixtures for the data tests: the offline copies."""

import pathlib

import pytest

from sparsejax.data import paths


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
  """The offline dataset copies, or skip when this machine has none."""
  root, _ = paths.resolve_data_dir(None)
  if not (root / "mnist").is_dir():
    pytest.skip(f"offline dataset copies not found at {root} "
                f"(set ${paths.DATA_DIR_ENV})")
  return root
