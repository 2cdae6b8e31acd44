"""dp_train selects PowerSGD and signSGD majority vote by config (smoke);
the data axis is passed to them by build_compressor."""

import pytest

from experiments.dp_train import train
from experiments.dp_train.configs import smoke

# The smoke MLP: (8*8) -> 16 -> 4, kernels compressed by PowerSGD (rank 1).
KERNELS = [(64, 16), (16, 4)]
BIASES = 16 + 4
D = sum(n * m for n, m in KERNELS) + BIASES


@pytest.mark.slow
def test_new_compressors_run_by_config_with_exact_bytes(tmp_path):
  config = smoke.get_config()
  config.methods = {
      "dense": {"name": "no_compression", "error_feedback": False},
      "ef_powersgd": {"name": "powersgd", "rank": 1, "start_iter": 2},
      "majority_vote": {"name": "sign_majority_vote",
                        "error_feedback": False},
  }
  runs = train.train_and_evaluate(config, str(tmp_path))
  devices, steps = config.num_devices, config.num_steps
  # Two dense warm-up steps, then the rank-1 factors and the dense biases.
  low_rank = sum(n + m for n, m in KERNELS) + BIASES
  assert runs["ef_powersgd"][-1]["bytes_sent"] == devices * 4 * (
      2 * D + (steps - 2) * low_rank)
  assert runs["ef_powersgd"][-1]["residual_norm"] > 0
  # One bit per parameter per device and step.
  assert runs["majority_vote"][-1]["bytes_sent"] == devices * steps * D / 8
  for name in ("ef_powersgd", "majority_vote"):
    assert runs[name][-1]["loss"] < runs[name][0]["loss"], name
