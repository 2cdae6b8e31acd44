"""Data parallelism with compressed collectives over a named mesh axis."""

from sparsejax.compress.messages import mean_over_axis
from sparsejax.parallel.collectives import compressed_mean
from sparsejax.parallel.data_parallel import data_mesh
from sparsejax.parallel.data_parallel import device_sum
from sparsejax.parallel.data_parallel import global_batch
from sparsejax.parallel.data_parallel import init_opt_state
from sparsejax.parallel.data_parallel import make_train_step
from sparsejax.parallel.data_parallel import replicated

__all__ = [
    "compressed_mean",
    "data_mesh",
    "device_sum",
    "global_batch",
    "init_opt_state",
    "make_train_step",
    "mean_over_axis",
    "replicated",
]
