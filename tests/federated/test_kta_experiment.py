"""experiments/kta end to end on the smoke config (market + FedAvg)."""

import os

from experiments.kta import train
from experiments.kta.configs import smoke


def test_smoke_outputs(tmp_path):
  config = smoke.get_config()
  config.methods = {k: v for k, v in config.methods.items()
                    if k in ("kta", "local", "fedavg")}
  runs = train.train_and_evaluate(config, str(tmp_path))
  kta, local, fedavg = (runs[k][0][-1] for k in ("kta", "local", "fedavg"))
  # bf16 logits: 64 x 4 values x 16 bits, up and down, 3 clients x 4 rounds.
  assert kta["total_bytes"] == 2 * 64 * 4 * 2 * 3 * 4
  assert local["total_bytes"] == 0
  assert kta["total_bytes"] < fedavg["total_bytes"] / 5
  for r in (kta, local, fedavg):
    assert 0 <= r["personal_accuracy"] <= 1 and 0 <= r["global_accuracy"] <= 1
  for name in ("summary.md", "summary.json", "personal_accuracy_vs_round.png",
               "personal_accuracy_vs_total_bytes.png"):
    assert os.path.getsize(tmp_path / name) > 100
  assert os.path.getsize(tmp_path / "kta" / "seed0" / "metrics.csv") > 100
