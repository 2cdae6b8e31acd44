"""Sahu et al. at CPU scale: 8 workers, MNIST MLP, equal total volume.

Top-k 1% per layer and global, hard threshold volume-matched to top-k 1%
(``1/(2 sqrt(k))``) and the budgeted hard threshold with exactly top-k 1%'s
total volume, all with error feedback, plus the dense baseline.
"""

import ml_collections

from experiments.dp_train.configs import default

RATIO = 0.01


def get_config():
  config = default.get_config()
  config.dataset = ml_collections.ConfigDict({"name": "mnist", "kwargs": {}})
  config.model = ml_collections.ConfigDict(
      {"name": "mlp", "kwargs": {"features": (200, 200)}})
  config.optimizer = ml_collections.ConfigDict(
      {"name": "sgd", "learning_rate": 0.05,
       "kwargs": {"momentum": 0.9, "nesterov": True}})
  config.methods = dict(default.methods(RATIO), ef_budgeted_threshold={
      "name": "hard_threshold", "budget_ratio": RATIO})
  config.num_devices = 8
  config.batch_size = 256
  config.num_steps = 1000
  config.log_every = 50
  config.eval_every = 250
  config.checkpoint_every = 500
  config.target_accuracy = 0.95
  return config
