"""A seconds-long run for the tests: tiny MLP, 4 devices, 2 methods."""

from experiments.dp_train.configs import default


def get_config():
  config = default.get_config()
  config.dataset.kwargs = {"num_train": 256, "num_test": 128,
                           "shape": (8, 8, 1), "num_classes": 4}
  config.model.kwargs = {"features": (16,)}
  config.methods = {k: v for k, v in default.methods(0.05).items()
                    if k in ("dense", "ef_top_k_global", "ef_hard_threshold")}
  config.num_devices = 4
  config.batch_size = 32
  config.num_steps = 8
  config.log_every = 2
  config.eval_every = 4
  config.checkpoint_every = 4
  return config
