"""Compressors as optax transformations, their wire messages and accounting.

The names a user needs are also in :mod:`sparsejax`; this subpackage is the
home of the rest (message types, state types, the statistics protocol).
"""

from sparsejax.compress.accounting import COMBINE
from sparsejax.compress.accounting import CommCounters
from sparsejax.compress.accounting import ReportsCommStats
from sparsejax.compress.accounting import comm_stats
from sparsejax.compress.base import Compressor
from sparsejax.compress.base import CompressorState
from sparsejax.compress.base import decoding_update
from sparsejax.compress.base import make_compressor
from sparsejax.compress.bitcount import BitCount
from sparsejax.compress.bitcount import exact
from sparsejax.compress.budget import BudgetState
from sparsejax.compress.calibration import Calibration
from sparsejax.compress.calibration import Pilot
from sparsejax.compress.calibration import calibrate_threshold
from sparsejax.compress.cost_weighted import EnergyLedger
from sparsejax.compress.cost_weighted import cost_weighted
from sparsejax.compress.cost_weighted import energy_metered
from sparsejax.compress.costs import costs_by_layer_kind
from sparsejax.compress.costs import energy_table_costs
from sparsejax.compress.costs import uniform_costs
from sparsejax.compress.dgc import DGCState
from sparsejax.compress.dgc import StagedMessage
from sparsejax.compress.dgc import dgc
from sparsejax.compress.messages import DenseMessage
from sparsejax.compress.messages import FlatMessage
from sparsejax.compress.messages import GatedMessage
from sparsejax.compress.messages import MaskedMessage
from sparsejax.compress.messages import Message
from sparsejax.compress.messages import PowerOfTwoMessage
from sparsejax.compress.messages import QuantizedMessage
from sparsejax.compress.messages import SeededMessage
from sparsejax.compress.messages import SignMessage
from sparsejax.compress.messages import SparseMessage
from sparsejax.compress.messages import TwoValueMessage
from sparsejax.compress.messages import decode
from sparsejax.compress.messages import exchanged_axes
from sparsejax.compress.messages import mean_over_axis
from sparsejax.compress.messages import message_overflow
from sparsejax.compress.messages import message_size
from sparsejax.compress.messages import message_support
from sparsejax.compress.messages import message_type
from sparsejax.compress.messages import static_field
from sparsejax.compress.powersgd import LowRankMessage
from sparsejax.compress.powersgd import PowerSGDState
from sparsejax.compress.powersgd import WarmupMessage
from sparsejax.compress.powersgd import powersgd
from sparsejax.compress.quantizers import cast
from sparsejax.compress.quantizers import natural_compression
from sparsejax.compress.quantizers import no_compression
from sparsejax.compress.quantizers import onebit
from sparsejax.compress.quantizers import qsgd
from sparsejax.compress.quantizers import scaled_sign
from sparsejax.compress.quantizers import terngrad
from sparsejax.compress.registry import COMPRESSORS
from sparsejax.compress.registry import create_compressor
from sparsejax.compress.signs import VoteMessage
from sparsejax.compress.signs import sign_majority_vote
from sparsejax.compress.signs import signum
from sparsejax.compress.sparsifiers import blockwise_top_k
from sparsejax.compress.sparsifiers import hard_threshold
from sparsejax.compress.sparsifiers import random_k
from sparsejax.compress.sparsifiers import top_k
from sparsejax.compress.sparsifiers import volume_matched_threshold

__all__ = [
    "BitCount",
    "BudgetState",
    "COMBINE",
    "COMPRESSORS",
    "Calibration",
    "CommCounters",
    "DGCState",
    "Compressor",
    "CompressorState",
    "DenseMessage",
    "EnergyLedger",
    "FlatMessage",
    "GatedMessage",
    "LowRankMessage",
    "MaskedMessage",
    "Message",
    "Pilot",
    "PowerOfTwoMessage",
    "PowerSGDState",
    "QuantizedMessage",
    "ReportsCommStats",
    "SeededMessage",
    "SignMessage",
    "SparseMessage",
    "StagedMessage",
    "TwoValueMessage",
    "VoteMessage",
    "WarmupMessage",
    "blockwise_top_k",
    "calibrate_threshold",
    "cast",
    "comm_stats",
    "cost_weighted",
    "costs_by_layer_kind",
    "create_compressor",
    "decode",
    "decoding_update",
    "dgc",
    "energy_metered",
    "energy_table_costs",
    "exact",
    "exchanged_axes",
    "hard_threshold",
    "make_compressor",
    "mean_over_axis",
    "message_overflow",
    "message_size",
    "message_support",
    "message_type",
    "natural_compression",
    "no_compression",
    "onebit",
    "powersgd",
    "qsgd",
    "random_k",
    "scaled_sign",
    "sign_majority_vote",
    "signum",
    "static_field",
    "terngrad",
    "top_k",
    "uniform_costs",
    "volume_matched_threshold",
]
