"""The docstring examples of sparsejax.data run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["sparsejax.data.loader", "sparsejax.data.batching"])
def test_doctests(name):
  result = doctest.testmod(importlib.import_module(name), verbose=False)
  assert result.failed == 0 and result.attempted > 0
