"""dp_train: per-method optimizer settings."""

import pytest

from experiments.dp_train import train
from experiments.dp_train.configs import smoke


def test_a_method_overrides_optimizer_keys_for_itself_only():
  config = smoke.get_config()
  optimizer, method = train.split_optimizer(
      config, {"name": "sign_majority_vote", "error_feedback": False,
               "optimizer": {"learning_rate": 1e-3, "kwargs": {}}})
  assert method == {"name": "sign_majority_vote", "error_feedback": False}
  assert optimizer["learning_rate"] == 1e-3 and optimizer["kwargs"] == {}
  assert optimizer["name"] == config.optimizer.name
  assert config.optimizer.learning_rate != 1e-3  # the config is untouched


def test_a_bad_method_optimizer_names_the_method():
  config = smoke.get_config()
  config.methods = {"signs": {"name": "no_compression",
                              "error_feedback": False,
                              "optimizer": {"name": "adamz"}}}
  with pytest.raises(ValueError, match="method signs.*adamz"):
    train.validate_config(config)
