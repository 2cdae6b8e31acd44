"""sparsejax: training neural networks under a communication budget."""

import importlib

# The compressors and what a user of optax.chain(sj.error_feedback(...), ...)
# needs; message and state types are in sparsejax.compress.
from sparsejax.compress import BitCount
from sparsejax.compress import COMPRESSORS
from sparsejax.compress import Compressor
from sparsejax.compress import blockwise_top_k
from sparsejax.compress import calibrate_threshold
from sparsejax.compress import cast
from sparsejax.compress import comm_stats
from sparsejax.compress import cost_weighted
from sparsejax.compress import costs_by_layer_kind
from sparsejax.compress import create_compressor
from sparsejax.compress import decode
from sparsejax.compress import dgc
from sparsejax.compress import energy_metered
from sparsejax.compress import energy_table_costs
from sparsejax.compress import exact
from sparsejax.compress import hard_threshold
from sparsejax.compress import make_compressor
from sparsejax.compress import natural_compression
from sparsejax.compress import no_compression
from sparsejax.compress import onebit
from sparsejax.compress import powersgd
from sparsejax.compress import qsgd
from sparsejax.compress import random_k
from sparsejax.compress import scaled_sign
from sparsejax.compress import sign_majority_vote
from sparsejax.compress import signum
from sparsejax.compress import terngrad
from sparsejax.compress import top_k
from sparsejax.compress import uniform_costs
from sparsejax.compress import volume_matched_threshold
from sparsejax.feedback import ef21
from sparsejax.feedback import error_feedback
from sparsejax.feedback import residual
from sparsejax.feedback import with_residual

from sparsejax import compress
from sparsejax import kernels
from sparsejax import parallel

# The federated engine (needs flax) and the experiment support (models, data,
# training: flax, orbax, matplotlib, ...) are loaded on first use, so that
# ``import sparsejax`` needs only jax, optax, chex and numpy.
_LAZY_SUBPACKAGES = ("data", "federated", "models", "training")


def __getattr__(name):
  if name in _LAZY_SUBPACKAGES:
    return importlib.import_module(f"sparsejax.{name}")
  raise AttributeError(f"module 'sparsejax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAZY_SUBPACKAGES))


__version__ = "0.1.0"

__all__ = [
    "BitCount",
    "COMPRESSORS",
    "Compressor",
    "blockwise_top_k",
    "calibrate_threshold",
    "cast",
    "comm_stats",
    "cost_weighted",
    "costs_by_layer_kind",
    "create_compressor",
    "decode",
    "dgc",
    "ef21",
    "energy_metered",
    "energy_table_costs",
    "error_feedback",
    "exact",
    "hard_threshold",
    "make_compressor",
    "natural_compression",
    "no_compression",
    "onebit",
    "powersgd",
    "qsgd",
    "random_k",
    "residual",
    "scaled_sign",
    "sign_majority_vote",
    "signum",
    "terngrad",
    "top_k",
    "uniform_costs",
    "volume_matched_threshold",
    "with_residual",
]
