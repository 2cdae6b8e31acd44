"""Default: generated images, 10 clients, 6 methods, offline in minutes.

:func:`get_config` (the binary's default) runs offline on 2 CPU cores in a
few minutes; :func:`base_config`, what the named configs start from:
CIFAR-10 (offline files), ResNet-9 width 8, 20 Dirichlet(0.5) clients, 10 per
round, 30 rounds (over 15 minutes on 2 cores; ``cifar10.py`` is its CPU-sized
form). ``FIELD_HELP``: the meaning of every field (``--help`` shows it).

``models`` lists architectures; client ``i`` uses ``models[i % len]``
(more than one entry: heterogeneous clients, FedAvg/FedProx then refuse).
Methods: ``kind`` is ``kta`` | ``fedmd`` | ``local`` (the market engine,
other keys override ``config.market`` and ``private_weight``) or ``fedavg`` |
``fedprox`` (the Simulation engine; ``mu`` for FedProx). ``search``: knobs
chosen on the clients' validation split (``{knob: candidates}``, each run
``search_rounds`` rounds). ``kta`` is the discriminating softmax rule,
``kta_power`` the documented defaults (``S^beta acc^gamma``, nearly FedMD).
"""

import ml_collections
from ml_collections import config_dict

from experiments import launch

FIELD_HELP = {
    "seeds": "Seeds; each draws its own reference set and partition.",
    **launch.DATASET_FIELD_HELP,
    "dataset.train_size": "Keep this many training examples (None: all).",
    "dataset.test_size": "Keep this many test examples (None: all).",
    "reference_size": "Public reference examples, drawn before partitioning.",
    "partition": "Clients: scheme iid | dirichlet (alpha) | shards "
                 "(classes_per_client) | groups (writers).",
    "partition.num_clients": "Number of clients.",
    "holdout_fraction": "Each client's personalised test share.",
    "validation_fraction": "Share of the rest the searches choose knobs on.",
    "search_rounds": "Rounds each search candidate runs.",
    "models": "Client architectures; client i uses models[i % len].",
    "optimizer": "Client optimizer (optimizer_from_config), fresh per phase.",
    "local_steps": "Local training steps per round.",
    "batch_size": "Local batch size.",
    "distill_steps": "Distillation steps per round (None: distill_epochs).",
    "distill_epochs": "Passes over the reference set when distill_steps=None.",
    "distill_batch_size": "Distillation batch size.",
    "private_weight": "Weight of a private cross-entropy term in distillation.",
    "market": "sparsejax.federated.MarketConfig fields of the market methods.",
    "methods": "Methods compared, name -> kind (kta, fedmd, local, fedavg, "
               "fedprox) and overrides.",
    "num_rounds": "Communication rounds per method.",
    "clients_per_round": "Clients sampled each round.",
    "eval_every": "Rounds between evaluations.",
    "checkpoint_every": "Rounds between checkpoints (resume point).",
}


def methods():
  return {
      "kta": {"kind": "kta", "teacher_rule": "softmax",
              "search": {"teacher_tau": (0.01, 0.03, 0.1),
                         "top_m": (None, 3)}},
      "kta_power": {"kind": "kta"},
      "fedmd": {"kind": "fedmd"},
      "local": {"kind": "local"},
      "fedavg": {"kind": "fedavg"},
      "fedprox": {"kind": "fedprox", "search": {"mu": (0.001, 0.01, 0.1)}},
  }


def base_config():
  """CIFAR-10 (offline files), ResNet-9 width 8, 20 clients, 30 rounds."""
  config = ml_collections.ConfigDict()
  config.seeds = (0,)
  config.dataset = ml_collections.ConfigDict(
      {"name": "cifar10", "source": "files",
       "data_dir": config_dict.placeholder(str),  # None; settable by flag
       "kwargs": {},
       "train_size": None,   # keep this many training examples (seeded)
       "test_size": None})   # and this many test examples; None: all
  # The public reference set is drawn from the training split before the
  # partition, so no client holds a reference example.
  config.reference_size = 1000
  config.partition = ml_collections.ConfigDict(
      {"scheme": "dirichlet", "num_clients": 20, "alpha": 0.5,
       "classes_per_client": 2})
  # Each client's held-out part: its personalised test set; then a
  # validation part of the rest, on which the searches choose knobs (no
  # method trains on it).
  config.holdout_fraction = 0.2
  config.validation_fraction = 0.15
  config.search_rounds = 5
  config.models = [{"name": "resnet9",
                    "kwargs": {"width": 8, "norm": "group"}}]
  # Client optimizer (optimizer_from_config keys), fresh for every phase.
  config.optimizer = ml_collections.ConfigDict(
      {"name": "sgd", "learning_rate": 0.05, "kwargs": {"momentum": 0.9}})
  config.local_steps = 10
  config.batch_size = 32
  # None: ceil(distill_epochs * reference_size / distill_batch_size) steps.
  config.distill_steps = None
  config.distill_epochs = 1.0
  config.distill_batch_size = 64
  # Weight of a private cross-entropy term in each distillation step.
  config.private_weight = 0.0
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


def get_config():
  """The binary's default: generated 16x16 images, MLPs, 10 clients."""
  config = base_config()
  config.dataset.update(name="synthetic", source="synthetic", kwargs={
      "num_train": 3000, "num_test": 500, "shape": (16, 16, 1),
      "class_sep": 4.0})
  config.reference_size = 300
  config.partition.num_clients = 10
  config.models = [{"name": "mlp", "kwargs": {"features": (64,)}}]
  config.local_steps = 5
  config.search_rounds = 2
  config.num_rounds = 10
  config.clients_per_round = 5
  config.eval_every = 2
  config.checkpoint_every = 5
  return config
