"""Selection kernels: pure jitted array functions on flat vectors.

Each public function has a plain-jnp ``*_reference`` twin with identical
semantics (see :mod:`sparsejax.kernels.reference` for the conventions).
"""

from sparsejax.kernels.reference import blockwise_layout
from sparsejax.kernels.reference import blockwise_top_k_select_reference
from sparsejax.kernels.reference import cost_weighted_select_reference
from sparsejax.kernels.reference import k_from_ratio
from sparsejax.kernels.reference import threshold_select_reference
from sparsejax.kernels.reference import top_k_select_reference

# Fast implementations (same signatures and results as the references).
from sparsejax.kernels.cost_weighted import cost_weighted_select
from sparsejax.kernels.threshold import threshold_select
from sparsejax.kernels.topk import blockwise_top_k_select
from sparsejax.kernels.topk import top_k_select

__all__ = [
    "blockwise_layout",
    "blockwise_top_k_select",
    "blockwise_top_k_select_reference",
    "cost_weighted_select",
    "cost_weighted_select_reference",
    "k_from_ratio",
    "threshold_select",
    "threshold_select_reference",
    "top_k_select",
    "top_k_select_reference",
]
