"""The docstring examples of sparsejax.models run."""

import doctest

from sparsejax.models import registry


def test_doctests():
  result = doctest.testmod(registry, verbose=False)
  assert result.failed == 0 and result.attempted > 0
