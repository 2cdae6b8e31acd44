"""experiments/kta end to end on the smoke config (market + FedAvg)."""

import importlib
import json
import os
import shutil

import jax
import numpy as np
import optax
import pytest

from experiments.kta import report
from experiments.kta import train
from experiments.kta.configs import cifar10_patchconv
from experiments.kta.configs import smoke
from sparsejax import federated
from sparsejax import models


def _config(methods=("kta", "local", "fedavg")):
  config = smoke.get_config()
  config.methods = {k: v for k, v in config.methods.items() if k in methods}
  return config


@pytest.mark.slow
def test_smoke_outputs_and_exact_resume(tmp_path):
  runs = train.train_and_evaluate(_config(), str(tmp_path))
  kta, local, fedavg = (runs[k][0][-1] for k in ("kta", "local", "fedavg"))
  # bf16 logits: 64 x 4 values x 16 bits, up and down, 3 clients x 4 rounds.
  assert kta["total_bytes"] == 2 * 64 * 4 * 2 * 3 * 4
  assert local["total_bytes"] == 0
  assert kta["total_bytes"] < fedavg["total_bytes"] / 5
  for r in (kta, local, fedavg):
    assert 0 <= r["personal_accuracy"] <= 1 and 0 <= r["global_accuracy"] <= 1
  for r in runs["kta"][0]:  # every round says how personal the market is
    assert 0 <= r["fedmd_distance"] <= 1 and r["weight_entropy"] >= 0
  # FedAvg fine-tuned locally: other models, so other accuracies.
  assert 0 <= fedavg["ft_personal_accuracy"] <= 1
  assert (fedavg["ft_personal_accuracy"], fedavg["ft_global_accuracy"]) != (
      fedavg["personal_accuracy"], fedavg["global_accuracy"])
  with open(tmp_path / "kta" / "seed0" / "search.json") as f:
    search = json.load(f)
  scores = [c["validation_accuracy"] for c in search["candidates"]]
  assert [c["knobs"] for c in search["candidates"]] == [
      {"teacher_tau": 0.03}, {"teacher_tau": 0.3}]
  assert search["chosen"] == search["candidates"][int(np.argmax(scores))][
      "knobs"]
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


@pytest.mark.parametrize("method,match", [
    ({"kind": "fedsgd"}, "methods.bad: unknown kind 'fedsgd'"),
    ({"kind": "kta", "teacher_temp": 0.1}, r"unknown options \['teacher_temp'"),
    ({"kind": "kta", "search": {"tau_x": (1.0,)}}, "unknown options"),
    ({"kind": "kta", "search": {"top_m": ()}}, "no candidates for"),
])
def test_bad_methods_fail_before_any_run(tmp_path, method, match):
  config = _config()
  config.methods["bad"] = method
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)
  config = _config()
  config.validation_fraction = 0.0
  with pytest.raises(ValueError, match="search needs a validation split"):
    train.check_methods(config)


def test_splits_are_disjoint_and_distillation_covers_the_reference():
  config = _config()
  train_parts, val, held, reference, _ = train.load_data(config, seed=0)
  for a, b, c in zip(train_parts.client_indices, val.client_indices,
                     held.client_indices):
    assert len(b) >= 1 and len(a) > len(b)
    assert not (set(a) & set(b) or set(a) & set(c) or set(b) & set(c))
  # One pass over the reference set per round unless distill_steps is given.
  config.distill_steps = None
  config.distill_epochs = 1.0
  steps = train.distill_steps(config)
  assert steps * config.distill_batch_size >= len(reference.y)
  assert (steps - 1) * config.distill_batch_size < len(reference.y)
  config.distill_epochs = 2.5
  assert train.distill_steps(config) == -(-5 * len(reference.y)
                                          // (2 * config.distill_batch_size))


def _fake_run(root, method, seed, accs, bytes_per_round, ft=None, tv=None):
  """Writes ``metrics.jsonl`` of one run: evaluations every 2 rounds."""
  path = root / method / f"seed{seed}"
  os.makedirs(path)
  with open(path / "metrics.jsonl", "w") as f:
    for i, acc in enumerate(accs):
      rnd = 2 * (i + 1)
      record = {"round": rnd, "personal_accuracy": acc,
                "global_accuracy": acc / 2,
                "total_bytes": bytes_per_round * rnd,
                "uplink_bytes": bytes_per_round * rnd / 2,
                "downlink_bytes": bytes_per_round * rnd / 2}
      if ft is not None:
        record.update(ft_personal_accuracy=ft[i], ft_global_accuracy=ft[i])
      if tv is not None:
        record.update(fedmd_distance=tv, weight_entropy=1.0)
      f.write(json.dumps(record) + "\n")
  return path


def test_report_table_verdicts_and_plots(tmp_path):
  runs = tmp_path / "runs"
  for seed, d in ((0, 0.0), (1, 0.02), (2, -0.01)):
    _fake_run(runs, "kta", seed, [0.5, 0.6 + d], 100, tv=0.2 + d)
    _fake_run(runs, "fedmd", seed, [0.5, 0.55 + d], 100, tv=0.0)
    _fake_run(runs, "local", seed, [0.6, 0.7 + d], 0)
    _fake_run(runs, "fedavg", seed, [0.3, 0.4], 1100 * 100,
              ft=[0.4, 0.58 + (0.05 if seed == 1 else 0)])
  with open(runs / "kta" / "seed0" / "search.json", "w") as f:
    json.dump({"chosen": {"teacher_tau": 0.03}}, f)
  out = tmp_path / "report"
  result = report.write_report([str(runs)], str(out))
  kta = result["methods"]["kta"]
  assert kta["final_personal_accuracy"]["mean"] == pytest.approx(0.6033333)
  assert kta["final_personal_accuracy"]["std"] == pytest.approx(
      np.std([0.6, 0.62, 0.59], ddof=1))
  assert kta["bytes_vs_baseline"] == pytest.approx(1 / 1100)
  assert kta["fedmd_distance"]["mean"] == pytest.approx(0.2033333)
  ft = result["methods"]["fedavg+ft"]
  assert ft["final_personal_accuracy"]["mean"] == pytest.approx(0.5966667)
  assert ft["bytes_vs_baseline"] == 1.0
  words = {v["claim"]: (v["word"], v["control"]) for v in result["verdicts"]}
  assert words == {"beats local-only": ("loses to", "local"),
                   "beats FedAvg/FedProx": ("is inconclusive against",
                                            "fedavg+ft"),
                   "improves over FedMD": ("beats", "fedmd")}
  text = (out / "report.md").read_text()
  assert "| kta | 3 | 4 | 0.6033 ± 0.0153 |" in text
  assert "1/1100" in text and "seed 0: {'teacher_tau': 0.03}" in text
  for name in ("personal_accuracy_vs_total_bytes.png",
               "global_accuracy_vs_total_bytes.png"):
    assert os.path.getsize(out / name) > 1000
  two = {m: {s: v for s, v in seeds.items() if s < 2}
         for m, seeds in report.load_runs([str(runs)])[0].items()}
  words = {v["claim"]: v["word"] for v in report.analyse(two)["verdicts"]}
  assert set(words.values()) == {"has too few seeds against"}
  _fake_run(tmp_path / "again", "kta", 0, [0.5], 100)
  with pytest.raises(ValueError, match="seed 0 is in two workdirs"):
    report.load_runs([str(runs), str(tmp_path / "again")])


@pytest.mark.parametrize("name", ["cifar10", "cifar10_hetero",
                                  "cifar10_patchconv", "ag_news", "femnist",
                                  "cifar10_resnet18"])
def test_named_configs_pass_the_method_checks(name):
  config = importlib.import_module(
      f"experiments.kta.configs.{name}").get_config()
  train.check_methods(config)
  assert len(config.seeds) >= 3 or name == "cifar10_resnet18"


def test_cnn_config_is_the_narrow_cnn_its_docstring_describes():
  config = cifar10_patchconv.get_config()
  (spec,) = config.models
  model = models.create_model(spec["name"], 10, **spec["kwargs"])
  params = jax.eval_shape(model.init, jax.random.key(0),
                          np.zeros((1, 32, 32, 3), np.float32))
  assert models.count_params(params) == 70_074
  assert "kta_power" not in config.methods and "fedmd" in config.methods
  assert config.num_rounds == 30
