"""Embedded default: MLP on the synthetic dataset, 8 devices, 4 methods.

Dense SGD, EF top-k 1% per layer, EF global top-k 1%, and Sahu's hard
threshold volume-matched to top-k 1%, all with the same optimizer. Runs
offline (generated data). ``FIELD_HELP``: the meaning of every field
(``--help`` shows it).
"""

import ml_collections
from ml_collections import config_dict

from experiments import launch

FIELD_HELP = {
    **launch.DATASET_FIELD_HELP,
    "model": "Model: name and kwargs of sparsejax.models.create_model.",
    "optimizer": "Optimizer after the compressor: name (optax), "
                 "learning_rate, schedule, kwargs.",
    "methods": "Methods compared, name -> compressor config "
               "(error_feedback: False for none, 'ef21' for EF21).",
    "num_devices": "Data-parallel devices (forced host devices on CPU).",
    "batch_size": "Global batch size (a multiple of num_devices).",
    "num_steps": "Training steps per method.",
    "log_every": "Steps between metric records and progress lines.",
    "eval_every": "Steps between test-set evaluations.",
    "checkpoint_every": "Steps between checkpoints (resume point).",
    "target_accuracy": "Test accuracy of the steps/bytes-to-target table.",
    "seed": "Seed of initialisation and data order.",
}


def methods(ratio=0.01):
  return {
      "dense": {"name": "no_compression", "error_feedback": False},
      "ef_top_k_leaf": {"name": "top_k", "ratio": ratio, "scope": "leaf"},
      "ef_top_k_global": {"name": "top_k", "ratio": ratio, "scope": "global"},
      "ef_hard_threshold": {"name": "hard_threshold",
                            "threshold": "volume_matched",
                            "volume_ratio": ratio},
  }


def get_config():
  config = ml_collections.ConfigDict()
  config.dataset = ml_collections.ConfigDict(
      {"name": "synthetic", "source": "synthetic",
       "data_dir": config_dict.placeholder(str),  # None; settable by flag
       "kwargs": {"num_train": 8192, "num_test": 2048, "shape": (16, 16, 1),
                  "class_sep": 4.0}})
  config.model = ml_collections.ConfigDict(
      {"name": "mlp", "kwargs": {"features": (128, 128)}})
  config.optimizer = ml_collections.ConfigDict(
      {"name": "sgd", "learning_rate": 0.05,
       "kwargs": {"momentum": 0.9, "nesterov": True}})
  config.methods = methods()
  config.num_devices = 8
  config.batch_size = 128
  config.num_steps = 200
  config.log_every = 20
  config.eval_every = 40
  config.checkpoint_every = 100
  config.target_accuracy = 0.9
  config.seed = 0
  return config
