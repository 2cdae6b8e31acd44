"""Shared training utilities: metric files, plots, checkpoints, work
directories, progress.

Nothing here parses flags or prints: progress goes through a ``log_fn`` the
caller passes (``absl.logging.info`` by default).
"""

from sparsejax.training.checkpoint import check_replicas_equal
from sparsejax.training.checkpoint import Checkpointer
from sparsejax.training.checkpoint import CorruptCheckpointError
from sparsejax.training.checkpoint import ReplicaMismatchError
from sparsejax.training.classifier import classification_loss
from sparsejax.training.classifier import evaluate
from sparsejax.training.classifier import split_variables
from sparsejax.training.loop import run_logged
from sparsejax.training.loop import run_with_checkpoints
from sparsejax.training.metrics import MetricsWriter
from sparsejax.training.metrics import read_metrics
from sparsejax.training.metrics import to_python_scalar
from sparsejax.training.optim import learning_rate_schedule
from sparsejax.training.optim import optimizer_from_config
from sparsejax.training.plotting import Column
from sparsejax.training.plotting import Plot
from sparsejax.training.plotting import axis_label
from sparsejax.training.plotting import bytes_to_target_table
from sparsejax.training.plotting import format_bytes
from sparsejax.training.plotting import format_table
from sparsejax.training.plotting import plot_curves
from sparsejax.training.plotting import summarize
from sparsejax.training.plotting import write_summary
from sparsejax.training.progress import format_duration
from sparsejax.training.progress import format_metrics
from sparsejax.training.progress import Progress
from sparsejax.training.progress import quiet_checkpoint_logs
from sparsejax.training.store_checkpoint import ClientStoreCheckpointer
from sparsejax.training.workdir import config_diff
from sparsejax.training.workdir import ConfigMismatchError
from sparsejax.training.workdir import open_workdir
from sparsejax.training.workdir import Workdir
from sparsejax.training.workdir import WorkdirLockedError

__all__ = [
    "Checkpointer",
    "ClientStoreCheckpointer",
    "ConfigMismatchError",
    "CorruptCheckpointError",
    "Column",
    "MetricsWriter",
    "Plot",
    "Progress",
    "ReplicaMismatchError",
    "Workdir",
    "WorkdirLockedError",
    "axis_label",
    "classification_loss",
    "config_diff",
    "evaluate",
    "split_variables",
    "bytes_to_target_table",
    "check_replicas_equal",
    "format_bytes",
    "format_duration",
    "format_metrics",
    "format_table",
    "learning_rate_schedule",
    "open_workdir",
    "optimizer_from_config",
    "plot_curves",
    "quiet_checkpoint_logs",
    "read_metrics",
    "run_logged",
    "run_with_checkpoints",
    "summarize",
    "to_python_scalar",
    "write_summary",
]
