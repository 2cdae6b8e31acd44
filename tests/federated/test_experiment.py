"""experiments/federated end to end on the smoke config, with exact resume."""

import os
import shutil

from experiments.federated import train
from experiments.federated.configs import smoke
from sparsejax import training


def _run(workdir):
  return train.train_and_evaluate(smoke.get_config(), str(workdir))


def test_outputs_and_exact_resume(tmp_path):
  full = _run(tmp_path)
  assert set(full) == {"fedavg", "sapef"}
  for method in full:  # "interrupted" after round 2: the last checkpoint lost
    shutil.rmtree(tmp_path / method / "checkpoints" / "4")
  resumed = _run(tmp_path)
  for method, records in full.items():
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    assert records == resumed[method], method
    assert training.read_metrics(tmp_path / method) == records
    assert os.path.getsize(tmp_path / method / "metrics.csv") > 100
  for name in ("accuracy_vs_round.png", "accuracy_vs_uplink_bytes.png",
               "accuracy_vs_total_bytes.png", "summary.md", "summary.json"):
    assert os.path.getsize(tmp_path / name) > 100
  dense, sparse = full["fedavg"][-1], full["sapef"][-1]
  assert sparse["uplink_bytes"] < dense["uplink_bytes"] / 10
  assert sparse["downlink_bytes"] == dense["downlink_bytes"]
  assert sparse["residual_norm"] > 0 and dense["residual_norm"] == 0
  assert "test_accuracy" in dense and "test_accuracy" not in full["fedavg"][0]
