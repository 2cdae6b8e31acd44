"""Flax (linen) models used by the experiments.

Every model is called as ``model.apply(variables, x, train=...)``, takes a
``dtype`` (computation dtype) while keeping float32 params, and returns float32
logits. BatchNorm handling is described in :mod:`sparsejax.models.common`.
"""

from sparsejax.models.common import NORMS
from sparsejax.models.leaf_cnn import LeafCNN
from sparsejax.models.mlp import MLP
from sparsejax.models.patch_conv import PatchConv
from sparsejax.models.registry import MODEL_NAMES
from sparsejax.models.registry import count_params
from sparsejax.models.registry import create_model
from sparsejax.models.registry import init_variables
from sparsejax.models.resnet18 import ResNet18
from sparsejax.models.resnet9 import ResNet9
from sparsejax.models.text_classifier import TextClassifier

__all__ = [
    "LeafCNN",
    "MLP",
    "MODEL_NAMES",
    "NORMS",
    "PatchConv",
    "ResNet18",
    "ResNet9",
    "TextClassifier",
    "count_params",
    "create_model",
    "init_variables",
]
