"""experiments/federated end to end on the smoke config, with exact resume."""

import os
import shutil

import pytest

from experiments.federated import train
from experiments.federated.configs import smoke
from sparsejax import training


def _run(workdir, **overrides):
  config = smoke.get_config()
  config.update(overrides)
  return train.train_and_evaluate(config, str(workdir))


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


def test_mmap_store_checkpoints_as_snapshots_and_resumes(tmp_path):
  """``client_store="mmap"``: same records as the device store; the clients
  are checkpointed as store snapshots beside the orbax steps, and a run
  interrupted after round 2 resumes exactly."""
  device = _run(tmp_path / "device")
  store = dict(client_store="mmap", store_dir=str(tmp_path / "store"))
  full = _run(tmp_path / "mmap", **store)
  ckpts = tmp_path / "mmap" / "sapef" / "checkpoints"
  assert sorted(os.listdir(ckpts / "client_store")) == ["2", "4"]
  assert sorted(os.listdir(tmp_path / "store")) == ["fedavg", "sapef"]
  for method in full:
    shutil.rmtree(tmp_path / "mmap" / method / "checkpoints" / "4")
  resumed = _run(tmp_path / "mmap", **store)
  for method, records in full.items():
    assert resumed[method] == records, method
    # The device store fuses gather, round and scatter in one jit: its float
    # sums may differ by an ulp, its bit counts not at all.
    for got, want in zip(records, device[method], strict=True):
      assert got.keys() == want.keys()
      assert got["uplink_bits"] == want["uplink_bits"]
      assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
