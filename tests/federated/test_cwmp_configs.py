"""CWMP experiment configs and the transmit-energy option of train.py."""

import ml_collections
import numpy as np
import pytest

import sparsejax as sj
from experiments.federated import cwmp_report
from experiments.federated import train
from experiments.federated.configs import cwmp_cifar10_cpu
from experiments.federated.configs import cwmp_cifar10_resnet18


def test_configs_name_every_method_for_the_report():
  cpu = cwmp_cifar10_cpu.get_config()
  levels = cwmp_report.by_level(
      {m: {} for m in cpu.methods})  # parses every name
  assert sorted(levels) == [0.01, 0.05]
  assert all(sorted(f) == ["cwmp_p1", "cwmp_p2", "topk"]
             for f in levels.values())
  assert cpu.methods["topk_1pct"]["compressor"]["rank"] == "magnitude"
  big = cwmp_cifar10_resnet18.get_config()
  assert sorted(cwmp_report.by_level({m: {} for m in big.methods})) == [
      0.01, 0.05, 0.1, 0.2]
  assert big.model.name == "resnet18" and big.partition.num_clients == 10
  assert list(cwmp_cifar10_cpu.get_config("dense").methods) == ["fedavg"]
  assert sorted(cwmp_report.by_level(
      {m: {} for m in cwmp_cifar10_cpu.get_config("0.02").methods})) == [0.02]


@pytest.mark.parametrize("e_tx", [0.0, 2.0, 20.0])
def test_tx_pj_per_bit_sets_the_energy_table(e_tx):
  params = {"conv": {"kernel": np.zeros((3, 3, 2, 4), np.float32)},
            "dense": {"kernel": np.zeros((8, 5), np.float32)}}
  config = ml_collections.ConfigDict({"tx_pj_per_bit": e_tx})
  costs = train.cost_model("energy_table", config)(params)
  expected = sj.energy_table_costs(params, tx_joules_per_bit=e_tx * 1e-12)
  assert costs == expected
  # 64 bits per entry at e_tx pJ/bit on top of the memory access energy.
  np.testing.assert_allclose(
      costs["conv"]["kernel"] - sj.energy_table_costs(
          params, tx_joules_per_bit=0.0)["conv"]["kernel"], 64 * e_tx * 1e-12)
  assert train.cost_model("uniform", config) == "uniform"
  assert train.cost_model("energy_table", ml_collections.ConfigDict()) == (
      "energy_table")


def test_tx_pj_per_bit_bad_value():
  with pytest.raises(ValueError, match="tx_pj_per_bit"):
    train.cost_model("energy_table",
                     ml_collections.ConfigDict({"tx_pj_per_bit": -1.0}))
