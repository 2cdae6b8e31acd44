"""Default: CIFAR-10, 20 Dirichlet(0.5) clients, 10 per round, 5 methods.

``models`` lists architectures; client ``i`` uses ``models[i % len]``
(more than one entry: heterogeneous clients, FedAvg/FedProx then refuse).
Methods: ``kind`` is ``kta`` | ``fedmd`` | ``local`` (the market engine,
other keys override ``config.market``) or ``fedavg`` | ``fedprox`` (the
Simulation engine; ``mu`` for FedProx).
"""

import ml_collections


def methods():
  return {
      "kta": {"kind": "kta"},
      "fedmd": {"kind": "fedmd"},
      "local": {"kind": "local"},
      "fedavg": {"kind": "fedavg"},
      "fedprox": {"kind": "fedprox", "mu": 0.01},
  }


def get_config():
  config = ml_collections.ConfigDict()
  config.seeds = (0,)
  config.dataset = ml_collections.ConfigDict(
      {"name": "cifar10", "data_dir": None, "kwargs": {},
       "train_size": None,   # keep this many training examples (seeded)
       "test_size": None})   # and this many test examples; None: all
  # The public reference set is drawn from the training split before the
  # partition, so no client holds a reference example.
  config.reference_size = 1000
  config.partition = ml_collections.ConfigDict(
      {"scheme": "dirichlet", "num_clients": 20, "alpha": 0.5,
       "classes_per_client": 2})
  # Each client's held-out part: its personalised test set.
  config.holdout_fraction = 0.2
  config.models = [{"name": "resnet9",
                    "kwargs": {"width": 8, "norm": "group"}}]
  # Client optimizer (optimizer_from_config keys), fresh for every phase.
  config.optimizer = ml_collections.ConfigDict(
      {"name": "sgd", "learning_rate": 0.05, "kwargs": {"momentum": 0.9}})
  config.local_steps = 10
  config.batch_size = 32
  config.distill_steps = 10
  config.distill_batch_size = 64
  # sparsejax.federated.MarketConfig fields (the documented defaults).
  config.market = ml_collections.ConfigDict(
      {"similarity": "cosine", "tau": 1.0, "beta": 1.0, "gamma": 1.0,
       "top_m": None, "include_self": False, "temperature": 1.0,
       "value_dtype": "float32"})
  config.methods = methods()
  config.num_rounds = 30
  config.clients_per_round = 10
  config.eval_every = 5
  config.checkpoint_every = 10
  return config
