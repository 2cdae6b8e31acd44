"""End-to-end dp_train on the smoke config: outputs and exact resume."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import launch
from experiments.dp_train import train
from experiments.dp_train.configs import sahu_cifar10_cpu
from experiments.dp_train.configs import smoke
import sparsejax as sj
from sparsejax import training


def _run(workdir, num_steps):
  config = smoke.get_config()
  config.num_steps = num_steps
  return train.train_and_evaluate(config, str(workdir))


@pytest.mark.slow
def test_outputs_bytes_and_exact_resume(tmp_path):
  full = _run(tmp_path / "full", 8)
  _run(tmp_path / "resumed", 4)        # "interrupted" after step 4
  resumed = _run(tmp_path / "resumed", 8)
  assert set(full) == {"dense", "ef_top_k_global", "ef_hard_threshold"}
  for method, records in full.items():
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert records == resumed[method], method
    # The files on disk hold the same records, once each.
    assert training.read_metrics(tmp_path / "resumed" / method) == records
  for name in ("accuracy_vs_bytes.png", "accuracy_vs_steps.png",
               "summary.md", "summary.json"):
    assert os.path.getsize(tmp_path / "full" / name) > 100
  _check_bytes_and_learning(full)


def _check_bytes_and_learning(runs):
  dense = runs["dense"][-1]["bytes_sent"]
  top_k = runs["ef_top_k_global"][-1]["bytes_sent"]
  # 4 devices x 8 steps x k=floor(0.05 d) entries x (32 value + 32 index) bits.
  d = 8 * 8 * 16 + 16 + 16 * 4 + 4
  assert top_k == 4 * 8 * int(0.05 * d) * 8
  assert dense == 4 * 8 * d * 4
  # Error feedback keeps a residual; the dense baseline has none.
  assert runs["ef_top_k_global"][-1]["residual_norm"] > 0
  assert runs["dense"][-1]["total_error"] == 0
  first, last = runs["ef_top_k_global"][0], runs["ef_top_k_global"][-1]
  assert last["loss"] < first["loss"]
  assert np.isfinite(last["test_accuracy"])


@pytest.mark.parametrize("change, message", [
    (lambda c: c.methods.update(x={"name": "top_q"}), "methods.x.*top_q"),
    (lambda c: c.optimizer.update(name="adamz"), "optimizer.*adamz"),
    (lambda c: c.dataset.update(name="imagenet"), "dataset.name.*imagenet"),
    (lambda c: c.update(batch_size=30), "batch_size 30.*num_devices 4"),
    (lambda c: c.methods.update(
        y={"name": "top_k", "ratio": 2.0}), "methods.y.*ratio"),
    (lambda c: c.methods.update(z={"name": "top_k", "ratio": 0.1,
                                   "error_feedback": "ef22"}),
     "methods.z.*error_feedback"),
])
def test_bad_config_fails_at_start_naming_the_option(tmp_path, change,
                                                     message):
  config = smoke.get_config()
  change(config)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)   # nothing was started


@pytest.mark.parametrize("feedback,kind", [
    (True, sj.feedback.ErrorFeedbackState), ("ef21", sj.feedback.EF21State)])
def test_feedback_is_chosen_by_config(feedback, kind):
  tx = train.build_compressor({"name": "top_k", "k": 1,
                               "error_feedback": feedback}, 3, 5, "data",
                              None)
  assert isinstance(tx.init(jnp.zeros(3)), kind)


@pytest.mark.slow
def test_calibrated_constant_threshold_matches_top_k_volume(tmp_path):
  config = smoke.get_config()
  config.methods = {
      "ef_top_k_global": {"name": "top_k", "ratio": 0.05, "scope": "global"},
      "calibrated": {"name": "hard_threshold", "threshold": "calibrated",
                     "volume_ratio": 0.05},
      "budgeted": {"name": "hard_threshold", "budget_ratio": 0.05,
                   "initial_threshold": "calibrated"}}
  config.calibration_rtol = 0.05
  runs = train.train_and_evaluate(config, str(tmp_path))
  target = runs["ef_top_k_global"][-1]["elements_sent"]
  info = json.loads((tmp_path / "calibrated" / "calibration.json").read_text())
  assert info["target_elements"] == target
  sent = runs["calibrated"][-1]["elements_sent"]
  assert abs(sent - target) <= 0.05 * target
  assert info["elements_sent"] == sent
  # The method's run is the chosen pilot's, which is a constant threshold.
  pilot_dir = (tmp_path / "calibration" / "ratio=0.05" /
               f"lambda={info['threshold']!r}")
  assert training.read_metrics(pilot_dir) == runs["calibrated"]
  # ... and is where reports find the method's run.
  assert training.read_metrics(tmp_path / "calibrated") == runs["calibrated"]
  assert len(info["pilots"]) >= 2
  # The budgeted rule never exceeds the same total.
  assert runs["budgeted"][-1]["elements_sent"] <= target
  # A rerun resumes every pilot from the cache and reruns none.
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again["calibrated"] == runs["calibrated"]


def test_calibrated_method_needs_a_volume_ratio(tmp_path):
  config = smoke.get_config()
  config.methods = {"c": {"name": "hard_threshold", "threshold": "calibrated"}}
  with pytest.raises(ValueError, match="methods.c.*volume_ratio"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize("name", ["sahu_mnist", "sahu_cifar10_cpu",
                                  "sahu_cifar10_resnet18"])
@pytest.mark.parametrize("arg", ["0.001", "0.0005,no_dense"])
def test_sahu_configs_validate_and_match_top_k_volume(name, arg):
  module = importlib.import_module(f"experiments.dp_train.configs.{name}")
  config = module.get_config(arg)
  train.validate_config(config)        # every method builds, no data read
  ratio = float(arg.split(",")[0])
  assert ("dense" in config.methods) == ("no_dense" not in arg)
  # Every compressed method is tied to top-k(ratio)'s volume.
  assert config.methods.ef_top_k_global.ratio == ratio
  assert config.methods.ef_threshold_calibrated.volume_ratio == ratio
  assert config.methods.ef_budgeted_calibrated.budget_ratio == ratio
  with pytest.raises(ValueError, match="no_dense"):
    module.get_config("0.001,dense")


def test_sahu_cifar10_cpu_is_the_narrow_cnn_with_frequent_checkpoints():
  # The docstring's departures: 70,074 parameters (conv 8 / conv 16 /
  # dense 64), and a retried run (retry.sh) loses at most 100 steps.
  config = sahu_cifar10_cpu.get_config("0.001")
  model = launch.create_model(config.model, 10)
  params = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, 32, 32, 3)))
  assert sj.models.count_params(params) == 70_074
  assert config.checkpoint_every <= 100 and config.num_steps == 1000
