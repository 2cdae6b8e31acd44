"""The SA-PEF configs mirror the authors' settings and build."""

import importlib

import pytest

from experiments import launch
from experiments.federated import train
from tests.federated import problem

CONFIGS = ("sapef_femnist_authors_cpu", "sapef_cifar10_cpu",
           "sapef_femnist_full", "sapef_cifar10_p10_dir05",
           "sapef_cifar10_p50_dir01")
MAIN = {"fedavg", "ef", "saef", "sapef", "cser"}


def _config(name, arg=None):
  module = importlib.import_module(f"experiments.federated.configs.{name}")
  return module.get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
def test_authors_settings(name):
  config = _config(name)
  assert config.aggregation == "support" and config.server_lr == 1.0
  assert config.local.momentum == 0.9 and config.local.warmup_rounds == 5
  assert config.local.weight_decay > 0 and config.mismatch_alpha == 1.0
  assert set(config.methods) == MAIN
  assert config.methods.sapef.alpha == 0.85 and config.methods.saef.alpha == 1
  assert config.methods.cser.reset_every == 5
  for method in config.methods.values():
    if "compressor" in method:
      assert method.compressor.to_dict() == {"name": "top_k", "ratio": 0.01,
                                             "scope": "global"}
  launch.create_model(config.model, 10)  # the model's kwargs are valid
  for name_, method in config.methods.items():
    algo = train.build_algorithm(method, config, problem.MODEL)
    assert algo.aggregation == "support", name_


@pytest.mark.parametrize("name,rounds,per_round,alpha,lrs", [
    ("sapef_cifar10_p10_dir05", 200, 10, 0.5, (0.1, 0.003)),
    ("sapef_cifar10_p50_dir01", 200, 50, 0.1, (0.1, 0.003)),
    # A narrow CNN without BatchNorm: 0.1 did not train (config docstring).
    ("sapef_cifar10_cpu", 60, 10, 0.1, (0.03, 0.001))])
def test_cifar_scales(name, rounds, per_round, alpha, lrs):
  config = _config(name)
  assert (config.num_rounds, config.clients_per_round) == (rounds, per_round)
  assert config.partition.scheme == "dirichlet"
  assert config.partition.alpha == alpha
  assert config.partition.num_clients == 100
  assert (config.local.lr, config.local.lr_min) == lrs
  assert (config.local.steps, config.local.batch_size) == (5, 64)


def test_method_choices():
  assert set(_config("sapef_cifar10_cpu", "core").methods) == {
      "fedavg", "ef", "sapef"}
  assert "sapef_mean" in _config("sapef_cifar10_cpu", "ablation").methods
  with pytest.raises(ValueError, match="'ablation' or 'core'"):
    _config("sapef_cifar10_cpu", "fast")


def test_femnist_full_scale():
  config = _config("sapef_femnist_full")
  assert config.model.name == "leaf_cnn" and not config.model.kwargs
  assert (config.num_rounds, config.clients_per_round,
          config.partition.num_clients) == (200, 20, 200)
  assert (config.local.lr, config.local.lr_min) == (0.01, 0.001)


def test_ablation_methods():
  config = _config("sapef_femnist_authors_cpu", "ablation")
  assert set(config.methods) == {"sapef_a025", "sapef_a050", "ef_mean",
                                 "sapef_mean"}
  assert config.methods.sapef_a025.alpha == 0.25
  assert config.methods.sapef_mean.aggregation == "mean"
  algo = train.build_algorithm(config.methods.ef_mean, config, problem.MODEL)
  assert algo.aggregation == "mean"
  with pytest.raises(ValueError, match="'ablation'"):
    _config("sapef_femnist_authors_cpu", "sweep")
