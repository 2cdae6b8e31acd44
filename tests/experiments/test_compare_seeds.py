"""experiments.compare_seeds: the seed table and banded plots of real layouts."""

import json

import pytest

from experiments import compare_seeds
from sparsejax import training


def _write_run(path, accs, bytes_per_step):
  writer = training.MetricsWriter(str(path))
  for i, acc in enumerate(accs):
    step = 100 * (i + 1)
    writer.write({"step": step, "loss": 1.0, "bytes_sent": bytes_per_step * step,
                  "total_error": 0.0, "test_accuracy": acc})


@pytest.mark.slow
def test_dp_train_runs_over_three_seeds(tmp_path):
  workdirs = []
  for seed, shift in enumerate((0.0, 0.02, 0.04)):
    w = tmp_path / str(seed)
    _write_run(w / "dense", [0.90 + shift, 0.95 + shift], 1000)
    _write_run(w / "ef_top_k", [0.85 + shift, 0.93 + shift], 10)
    workdirs.append(str(w))
  _write_run(tmp_path / "0" / "only_seed0", [0.5, 0.6], 1)  # not in all seeds
  out = tmp_path / "report"
  table = compare_seeds.write("dp_train", workdirs, 0.94, str(out))
  assert "only_seed0" not in table
  data = json.loads((out / "summary.json").read_text())
  text = (out / "summary.md").read_text()
  assert "ef_top_k" in text and "dense" in text
  top_k = data["methods"]["ef_top_k"]
  assert top_k["final test acc"] == pytest.approx([0.93, 0.95, 0.97])
  assert top_k["bytes sent"] == [2000] * 3
  # Seed 0's top-k never reaches 0.94; seeds 1 and 2 at step 200.
  assert data["to_target"]["methods"]["ef_top_k"]["step"] == [None, 200, 200]
  assert (out / "accuracy_vs_bytes.png").stat().st_size > 5000


def test_no_shared_method_is_an_error(tmp_path):
  _write_run(tmp_path / "0" / "a", [0.5], 1)
  _write_run(tmp_path / "1" / "b", [0.5], 1)
  with pytest.raises(FileNotFoundError, match="no method"):
    compare_seeds.per_seed([str(tmp_path / "0"), str(tmp_path / "1")])
