"""Default: generated 16x16 images, MLP, 50 Dirichlet(0.5) clients, offline.

Methods compared: dense FedAvg, EF-FedAvg, SAEF (alpha = 1) and SA-PEF
(alpha = 0.85), all compressed ones with global top-1% on the uplink.
:func:`get_config` runs offline in a few minutes on 2 CPU cores;
:func:`base_config` (MNIST, 2NN MLP, 100 clients, 100 rounds; ``mnist.py``)
is what the named configs start from. ``FIELD_HELP``: the meaning of every
field (``--help`` shows it).
"""

import ml_collections
from ml_collections import config_dict

from experiments import launch

FIELD_HELP = {
    "seed": "Seed of the partition, initialisation and client sampling.",
    **launch.DATASET_FIELD_HELP,
    "partition": "Clients: scheme iid | dirichlet (alpha) | shards "
                 "(classes_per_client) | groups (writers).",
    "partition.num_clients": "Number of clients.",
    "partition.alpha": "Dirichlet concentration (smaller: more skewed).",
    "partition.classes_per_client": "Classes per client (shards scheme).",
    "model": "Model: name and kwargs of sparsejax.models.create_model.",
    "local": "Local SGD: lr warm-up + cosine over rounds, momentum, "
             "weight_decay, steps and batch_size per round.",
    "server_lr": "Server step size on the aggregated update (1 with a "
                 "method's server_opt).",
    "aggregation": "mean, or support (the SA-PEF code's per-entry mean).",
    "methods": "Methods compared, name -> algorithm, compressor, alpha, "
               "server_opt ({name: adam|yogi|adagrad|sgd, learning_rate, "
               "...}: FedOpt), ...",
    "num_rounds": "Communication rounds per method.",
    "clients_per_round": "Clients sampled each round.",
    "num_devices": "Devices the clients are split over (> 1: shard_map).",
    "client_batch_size": "Clients vectorised together (None: all).",
    "client_store": "Where the clients' states live: device | host (numpy "
                    "in RAM) | mmap (files under store_dir/<method>).",
    "store_dir": "Directory of the mmap store's files (client_store=mmap).",
    "dropout_rate": "Probability that a sampled client drops out.",
    "eval_every": "Rounds between test-set evaluations.",
    "probe_size": "Held-out examples of the gradient-mismatch metric.",
    "log_every": "Rounds between progress lines.",
    "checkpoint_every": "Rounds between checkpoints (resume point).",
    "target_accuracy": "Test accuracy of the rounds/bytes-to-target table.",
}


def methods(ratio: float = 0.01):
  """FedAvg and the EF family at top-``ratio`` (global) on the uplink."""
  top_k = {"name": "top_k", "ratio": ratio, "scope": "global"}
  return {
      "fedavg": {"algorithm": "fedavg"},
      "ef": {"algorithm": "ef_fedavg", "compressor": top_k},
      "saef": {"algorithm": "sapef", "alpha": 1.0, "compressor": top_k},
      "sapef": {"algorithm": "sapef", "alpha": 0.85, "compressor": top_k},
  }


def base_config():
  """MNIST (offline files), 2NN MLP, 100 clients, 100 rounds."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = ml_collections.ConfigDict(
      {"name": "mnist", "source": "files",
       "data_dir": config_dict.placeholder(str),  # None; settable by flag
       "kwargs": {}})
  # scheme: iid | dirichlet (alpha) | shards (classes_per_client) | groups.
  config.partition = ml_collections.ConfigDict(
      {"scheme": "dirichlet", "num_clients": 100, "alpha": 0.5,
       "classes_per_client": 2})
  # Any sparsejax.models.create_model name; use norm="group" for ResNets.
  config.model = ml_collections.ConfigDict(
      {"name": "mlp", "kwargs": {"features": (200, 200)}})
  # Local SGD: lr follows warm-up + cosine over rounds, fresh state each round.
  config.local = ml_collections.ConfigDict(
      {"lr": 0.05, "lr_min": 0.005, "warmup_rounds": 0, "momentum": 0.9,
       "weight_decay": 0.0, "steps": 10, "batch_size": 32})
  config.server_lr = 1.0
  config.aggregation = "mean"  # or "support" (the SA-PEF code's)
  config.methods = methods()
  config.num_rounds = 100
  config.clients_per_round = 10
  config.num_devices = 1       # > 1: clients split over devices (shard_map)
  config.client_batch_size = None  # vectorise clients in chunks of this many
  # device | host | mmap: per-client states on the device, in host RAM or in
  # memory-mapped files (sparsejax.federated.client_store) for large N.
  config.client_store = "device"
  config.store_dir = config_dict.placeholder(str)  # for client_store="mmap"
  config.dropout_rate = 0.0    # a sampled client drops out mid-round
  config.eval_every = 5
  config.probe_size = 64       # held-out batch of the gradient mismatch
  config.log_every = 10
  config.checkpoint_every = 10
  config.target_accuracy = 0.9
  return config


def get_config():
  """The binary's default: generated data, small enough for 2 CPU cores."""
  config = base_config()
  config.dataset.update(name="synthetic", source="synthetic", kwargs={
      "num_train": 6000, "num_test": 1000, "shape": (16, 16, 1),
      "class_sep": 4.0})
  config.partition.num_clients = 50
  config.model.kwargs = {"features": (128,)}
  config.num_rounds = 40
  config.log_every = 5
  config.target_accuracy = 0.8
  return config
