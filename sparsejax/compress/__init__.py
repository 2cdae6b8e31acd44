"""Compressors as optax transformations, their wire messages and accounting."""

from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.accounting import comm_stats
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.bitcount import exact
from sparsejax.compress.accounting import BudgetState
from sparsejax.compress.accounting import EnergyLedger
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import CompressorState
from sparsejax.compress.base import make_compressor
from sparsejax.compress.budget import budgeted_hard_threshold
from sparsejax.compress.cost_weighted import cost_weighted
from sparsejax.compress.cost_weighted import energy_metered
from sparsejax.compress.costs import costs_by_layer_kind
from sparsejax.compress.costs import energy_table_costs
from sparsejax.compress.costs import uniform_costs
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import FlatMessage
from sparsejax.compress.messages import GatedMessage
from sparsejax.compress.messages import MaskedMessage
from sparsejax.compress.messages import QuantizedMessage
from sparsejax.compress.messages import SeededMessage
from sparsejax.compress.messages import SignMessage
from sparsejax.compress.messages import SparseMessage
from sparsejax.compress.messages import decode
from sparsejax.compress.messages import message_size
from sparsejax.compress.messages import message_support
from sparsejax.compress.quantizers import cast
from sparsejax.compress.quantizers import identity
from sparsejax.compress.quantizers import qsgd
from sparsejax.compress.quantizers import scaled_sign
from sparsejax.compress.sparsifiers import blockwise_top_k
from sparsejax.compress.sparsifiers import hard_threshold
from sparsejax.compress.sparsifiers import random_k
from sparsejax.compress.sparsifiers import top_k
from sparsejax.compress.sparsifiers import volume_matched_threshold
from sparsejax.compress.registry import COMPRESSORS
from sparsejax.compress.registry import create as create_compressor
from sparsejax.compress.registry import from_config as compressor_from_config
