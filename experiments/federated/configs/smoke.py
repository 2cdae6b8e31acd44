"""Seconds-long run for the tests: synthetic data, tiny MLP, 2 methods."""

from experiments.federated.configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "synthetic"
  config.dataset.kwargs = {"num_train": 512, "num_test": 128,
                           "shape": (8, 8, 1), "num_classes": 4}
  config.partition.num_clients = 8
  config.model.kwargs = {"features": (16,)}
  config.local.update(steps=2, batch_size=16, lr=0.1, lr_min=0.01,
                      warmup_rounds=1)
  config.methods = {k: v for k, v in default.methods(0.05).items()
                    if k in ("fedavg", "sapef")}
  config.num_rounds = 4
  config.clients_per_round = 3
  config.num_devices = 1
  config.eval_every = 2
  config.probe_size = 16
  config.log_every = 2
  config.checkpoint_every = 2
  config.target_accuracy = 0.5
  return config
