"""FEMNIST (offline LEAF subset): natural per-writer clients, 62 classes.

The reference set (1,000 images) is drawn from the training split before
the writers are partitioned; 100 seeded writers (of the subset's 300) are
the clients, 20 per round, each holding out 20%. Model: MLP(200) (the LEAF
CNN, 6.6M params, is too slow on this CPU).
"""

from experiments.kta.configs import default


def get_config():
  config = default.base_config()
  config.dataset.name = "femnist"
  config.dataset.test_size = 2000
  config.reference_size = 1000
  config.seeds = (0, 1, 2)
  config.partition.scheme = "groups"
  config.partition.num_clients = 100
  config.models = [{"name": "mlp", "kwargs": {"features": (200,)}}]
  config.optimizer.learning_rate = 0.01
  config.clients_per_round = 20
  config.num_rounds = 50
  return config
