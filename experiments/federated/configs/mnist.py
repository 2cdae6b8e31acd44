"""MNIST (the offline copy, or ``--config.dataset.source=tfds``): 2NN MLP,
100 Dirichlet(0.5) clients, 10 per round, 100 rounds, 4 methods."""

from experiments.federated.configs import default


def get_config():
  return default.base_config()
