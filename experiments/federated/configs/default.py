"""Default: MNIST, 2NN MLP, 100 Dirichlet(0.5) clients, 10 per round.

Methods compared: dense FedAvg, EF-FedAvg, SAEF (alpha = 1) and SA-PEF
(alpha = 0.85), all compressed ones with global top-1% on the uplink.
"""

import ml_collections


def methods(ratio: float = 0.01):
  """FedAvg and the EF family at top-``ratio`` (global) on the uplink."""
  top_k = {"name": "top_k", "ratio": ratio, "scope": "global"}
  return {
      "fedavg": {"algorithm": "fedavg"},
      "ef": {"algorithm": "ef_fedavg", "compressor": top_k},
      "saef": {"algorithm": "sapef", "alpha": 1.0, "compressor": top_k},
      "sapef": {"algorithm": "sapef", "alpha": 0.85, "compressor": top_k},
  }


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = ml_collections.ConfigDict(
      {"name": "mnist", "data_dir": None, "kwargs": {}})
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
  config.dropout_rate = 0.0    # a sampled client drops out mid-round
  config.eval_every = 5
  config.probe_size = 64       # held-out batch of the gradient mismatch
  config.log_every = 10
  config.checkpoint_every = 10
  config.target_accuracy = 0.9
  return config
