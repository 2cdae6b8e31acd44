"""End-to-end dp_train on the smoke config: outputs and exact resume."""

import os

import numpy as np
import pytest

from experiments.dp_train import train
from experiments.dp_train.configs import smoke
from sparsejax import training


def _run(workdir, num_steps):
  config = smoke.get_config()
  config.num_steps = num_steps
  return train.train_and_evaluate(config, str(workdir))


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
])
def test_bad_config_fails_at_start_naming_the_option(tmp_path, change,
                                                     message):
  config = smoke.get_config()
  change(config)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)   # nothing was started
