"""experiments/kta end to end on the smoke config (market + FedAvg)."""

import os
import shutil

import numpy as np
import optax
import pytest

from experiments.kta import train
from experiments.kta.configs import smoke
from sparsejax import federated
from sparsejax import models


def _config(methods=("kta", "local", "fedavg")):
  config = smoke.get_config()
  config.methods = {k: v for k, v in config.methods.items() if k in methods}
  return config


def test_smoke_outputs_and_exact_resume(tmp_path):
  runs = train.train_and_evaluate(_config(), str(tmp_path))
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
  for method in runs:  # "interrupted" after round 2: the last checkpoint lost
    shutil.rmtree(tmp_path / method / "seed0" / "checkpoints" / "4")
  resumed = train.train_and_evaluate(_config(), str(tmp_path))
  assert resumed == runs


def test_fedavg_fedprox_refuse_heterogeneous_models():
  small = models.create_model("mlp", 4, features=(16,))
  other = models.create_model("mlp", 4, features=(8, 8))
  groups = [federated.ArchitectureGroup(small, (0, 1)),
            federated.ArchitectureGroup(other, (2, 3))]
  example_x = np.zeros((1, 8, 8, 1), np.float32)
  for name, kw in (("fedavg", {}), ("fedprox", {"mu": 0.01})):
    with pytest.raises(ValueError, match="one architecture"):
      train.baseline_algorithm(name, groups, example_x, optax.sgd(0.1), **kw)
  algo = train.baseline_algorithm("fedprox", groups[:1], example_x,
                                  optax.sgd(0.1), mu=0.01)
  assert isinstance(algo, federated.FederatedAlgorithm)


def test_unknown_kind_fails_before_any_run(tmp_path):
  config = _config()
  config.methods["bad"] = {"kind": "fedsgd"}
  with pytest.raises(ValueError, match="methods.bad: unknown kind 'fedsgd'"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)
