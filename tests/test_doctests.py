"""The docstring examples of the core sparsejax modules pass."""

import doctest
import importlib

import pytest

MODULES = [
    "sparsejax.compress.sparsifiers",
    "sparsejax.compress.quantizers",
    "sparsejax.compress.accounting",
    "sparsejax.compress.messages",
    "sparsejax.compress.base",
    "sparsejax.feedback",
    "sparsejax.compress.budget",
    "sparsejax.compress.cost_weighted",
    "sparsejax.compress.costs",
    "sparsejax.compress.registry",
    "sparsejax.compress.calibration",
    "sparsejax.compress.powersgd",
    "sparsejax.compress.signs",
    "sparsejax.compress.dgc",
]
# Modules that must contain examples (an empty run would pass vacuously).
WITH_EXAMPLES = {"sparsejax.compress.sparsifiers",
                 "sparsejax.compress.accounting", "sparsejax.feedback"}


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
  assert result.failed == 0, f"{result.failed} doctest failures in {name}"
  if name in WITH_EXAMPLES:
    assert result.attempted > 0
