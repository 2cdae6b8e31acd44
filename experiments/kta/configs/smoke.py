"""Seconds-long run for the tests: synthetic data, tiny MLPs, every method."""

from experiments.kta.configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "synthetic"
  config.dataset.kwargs = {"num_train": 600, "num_test": 128,
                           "shape": (8, 8, 1), "num_classes": 4}
  config.reference_size = 64
  config.partition.num_clients = 6
  config.models = [{"name": "mlp", "kwargs": {"features": (16,)}}]
  config.optimizer.learning_rate = 0.1
  config.local_steps = 2
  config.batch_size = 16
  config.distill_steps = 2
  config.distill_batch_size = 32
  config.market.value_dtype = "bfloat16"
  config.methods["kta"]["search"] = {"teacher_tau": (0.03, 0.3)}
  config.methods["fedprox"]["search"] = {"mu": (0.01, 0.1)}
  config.search_rounds = 2
  config.num_rounds = 4
  config.clients_per_round = 3
  config.eval_every = 2
  config.checkpoint_every = 2
  return config
