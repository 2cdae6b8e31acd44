"""The Sahu report: volumes, paired differences and the verdict rule."""

import json

import pytest

from experiments.dp_train import report
from sparsejax import training


def _write_run(path, accs, elements_per_step, total_error, steps=(50, 100)):
  writer = training.MetricsWriter(str(path))
  sent = 0
  for i, step in enumerate(steps):
    sent += elements_per_step[i] * (step - (steps[i - 1] if i else 0))
    writer.write({"step": step, "loss": 1.0, "accuracy": 0.5,
                  "bytes_sent": 8 * sent, "elements_sent": sent,
                  "total_error": total_error, "residual_norm": 1.0,
                  "test_accuracy": accs[i]})


def _make_root(tmp_path, gain, seeds=("0", "1", "2"), skew=1.0):
  root = tmp_path / "root"
  for j, seed in enumerate(seeds):
    base = tmp_path / "root" / "ratio=0.001" / seed
    top = 0.90 + 0.01 * j
    _write_run(base / "ef_top_k_global", [0.8, top], [100, 100], 10.0)
    # Same total volume (skewed in time by `skew`), accuracy top + gain[j].
    _write_run(base / "ef_threshold_calibrated", [0.8, top + gain[j]],
               [100 * skew, 100 * (2 - skew)], 5.0)
    (base / "ef_threshold_calibrated" / "calibration.json").write_text(
        json.dumps({"threshold": 0.1, "pilots": [{}, {}],
                    "volume_vs_target": 1.0}))
  return root


@pytest.mark.parametrize("gain, words", [
    ((0.01, 0.012, 0.011), "beats top-k"),
    ((-0.01, -0.012, -0.011), "worse than top-k"),
    ((0.01, -0.01, 0.002), "not distinguishable"),
])
def test_verdict_follows_the_paired_interval(tmp_path, gain, words):
  root = _make_root(tmp_path, gain, skew=1.5)
  results = report.write_report(str(root), str(tmp_path / "out"))
  r = results["0.001"]
  assert words in r["verdict"] and "volumes matched within 2%" in r["verdict"]
  paired = r["paired_vs_top_k"]["ef_threshold_calibrated"]
  assert paired["final_acc"]["diffs"] == pytest.approx(list(gain))
  assert paired["total_error_ratio"]["mean"] == pytest.approx(0.5)
  assert r["rows"]["ef_threshold_calibrated"]["volume_vs_top_k"] == [1.0] * 3
  md = (tmp_path / "out" / "report.md").read_text()
  assert "Verdict" in md and "0.1 (2 pilots" in md
  assert (tmp_path / "out" / "ratio=0.001.png").stat().st_size > 1000


@pytest.mark.slow
def test_unmatched_volumes_and_few_seeds_are_said(tmp_path):
  root = _make_root(tmp_path, (0.01, 0.01, 0.01), skew=1.0)
  # Seed 2's constant threshold sent 10% more than top-k.
  _write_run(root / "ratio=0.001" / "2" / "ef_threshold_calibrated",
             [0.8, 0.93], [110, 110], 5.0)
  r = report.write_report(str(root), str(tmp_path / "out"))["0.001"]
  assert "NOT matched" in r["verdict"]
  few = _make_root(tmp_path / "few", (0.01,), seeds=("0",))
  r = report.write_report(str(few), str(tmp_path / "out2"))["0.001"]
  assert "too few seeds" in r["verdict"]


@pytest.mark.slow
def test_incomplete_runs_are_left_out_and_named(tmp_path):
  root = _make_root(tmp_path, (0.01, 0.01, 0.01))
  _write_run(root / "ratio=0.001" / "3" / "ef_top_k_global", [0.8], [100], 1.0,
             steps=(50,))
  r = report.write_report(str(root), str(tmp_path / "out"))["0.001"]
  assert r["incomplete_runs_left_out"] == ["ef_top_k_global/3 (50 of 100 rounds)"]
  assert len(r["paired_vs_top_k"]["ef_threshold_calibrated"]["final_acc"][
      "diffs"]) == 3
