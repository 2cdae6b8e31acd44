"""Issue #20's methods on a generated population of 10,000 clients.

The host-store demonstration of :mod:`fedopt_femnist`: 200,000 generated
16x16 images of 10 classes (``load_synthetic``, class separation 4)
split over 10,000 Dirichlet(0.5) clients (20 examples each on average;
at 0.3 some seeds leave a client empty in 1,000 draws),
30 clients per round, a 256-64-10 MLP (17,098 params), the client states
(EF residuals, SCAFFOLD control variates) in memory-mapped files
(``client_store="mmap"``, under ``store_dir``; checkpoints stream them,
:class:`sparsejax.training.ClientStoreCheckpointer`), 100 rounds, 5 local
SGD steps of batch 16 (lr 0.05 -> 0.005 with warm-up, momentum 0.9), test
accuracy every 5 rounds on 10,000 generated test images. Methods as
:mod:`fedopt_femnist` (FedAvg, FedAdam, SCAFFOLD, EF, each with and without
the compressed downlink).

Set ``--config.store_dir`` to a directory with ~0.7 GB free per method.
"""

from experiments.federated.configs import default
from experiments.federated.configs import fedopt_femnist


def get_config():
  config = default.base_config()
  config.dataset.update(name="synthetic", source="synthetic", kwargs={
      "num_train": 200_000, "num_test": 10_000, "shape": (16, 16, 1),
      "class_sep": 4.0})
  config.partition.update(scheme="dirichlet", num_clients=10_000, alpha=0.5)
  config.model.kwargs = {"features": (64,)}
  config.local.update(lr=0.05, lr_min=0.005, warmup_rounds=5, momentum=0.9,
                      weight_decay=0.0, steps=5, batch_size=16)
  config.methods = fedopt_femnist.methods()
  config.client_store = "mmap"
  config.store_dir = "/tmp/sparsejax_fedopt_synthetic10k_store"
  config.num_rounds = 100
  config.clients_per_round = 30
  config.eval_every = 5
  config.probe_size = 0
  config.log_every = 25
  config.checkpoint_every = 50
  config.target_accuracy = 0.7
  return config
