"""The CWMP report script on synthetic runs (no training)."""

import os

import numpy as np
import pytest

from experiments.federated import cwmp_report
from tests.federated import run_files

E_ROUND = 1e-3  # J per round at level 1%


def _records(final, energy_per_round, rounds=20):
  """Accuracy rising linearly to ``final``, evaluated every 5 rounds."""
  out = []
  for r in range(1, rounds + 1):
    rec = {"round": r, "energy_joules": energy_per_round * r,
           "uplink_bytes": 100.0 * r, "total_bytes": 300.0 * r}
    if r % 5 == 0:
      rec["test_accuracy"] = final * r / rounds
    out.append(rec)
  return out


_write = run_files.write_run


def _root(tmp_path, name, topk, p1, p2, p1_energy=1.0, level="1"):
  root = str(tmp_path / name)
  for s, (a, b, c) in enumerate(zip(topk, p1, p2)):
    _write(root, f"topk_{level}pct", s, _records(a, E_ROUND))
    _write(root, f"cwmp_p1_{level}pct", s, _records(b, p1_energy * E_ROUND))
    _write(root, f"cwmp_p2_{level}pct", s, _records(c, E_ROUND))
  return root


@pytest.mark.slow
def test_verdicts_paired_differences_and_energy_match(tmp_path):
  # p1 beats top-k by 2, 3, 4 points; p2 loses 1, 5, 0 (mixed).
  root = _root(tmp_path, "etx0", [0.50, 0.52, 0.48], [0.52, 0.55, 0.52],
               [0.49, 0.47, 0.48])
  dense = str(tmp_path / "dense")
  for s, a in enumerate([0.6, 0.62, 0.61]):
    _write(dense, "fedavg", s, _records(a, 0.0))
  out = str(tmp_path / "out")
  result = cwmp_report.write_report([root], out, dense)
  level = result["roots"]["etx0"]["analysis"]["levels"]["0.01"]
  p1 = level["comparisons"]["cwmp_p1"]
  assert p1["paired"]["diffs"] == pytest.approx([0.02, 0.03, 0.04])
  # t_{0.975, 2} = 4.302653: half width 4.3027 * 0.01 / sqrt(3).
  half = 4.302653 * 0.01 / np.sqrt(3)
  assert p1["paired"]["ci95"] == pytest.approx([0.03 - half, 0.03 + half])
  assert p1["energy_ratio"]["mean"] == pytest.approx(1.0)
  assert p1["verdict"] == "better"
  p2 = level["comparisons"]["cwmp_p2"]
  assert (p2["paired"]["wins"], p2["paired"]["ties"],
          p2["paired"]["losses"]) == (0, 1, 2)
  assert p2["verdict"] == "indistinguishable"
  acc = level["families"]["topk"]["accuracy"]
  assert acc["mean"] == pytest.approx(0.5)
  assert level["families"]["topk"]["energy"]["mean"] == pytest.approx(
      20 * E_ROUND)
  assert result["dense"]["accuracy"]["mean"] == pytest.approx(0.61)
  sentence = result["roots"]["etx0"]["verdict"]
  assert sentence.startswith("etx0: CWMP p1 vs energy-matched top-k: better "
                             "at 1% of dense energy (+3.0 ± 1.0 points")
  assert "CWMP p2 vs energy-matched top-k: indistinguishable" in sentence
  text = open(os.path.join(out, "report.md")).read()
  assert "| 1% | cwmp_p1 |" in text and sentence in text
  assert os.path.isfile(os.path.join(out, "accuracy_vs_energy_etx0.png"))


@pytest.mark.slow
def test_worse_and_unmatched_energy_are_called_so(tmp_path):
  worse = _root(tmp_path, "etx20", [0.5, 0.52, 0.48], [0.45, 0.46, 0.44],
                [0.5, 0.52, 0.48])
  unmatched = _root(tmp_path, "etx2", [0.5, 0.52, 0.48], [0.55, 0.57, 0.53],
                    [0.5, 0.52, 0.48], p1_energy=1.05)
  result = cwmp_report.write_report([worse, unmatched], str(tmp_path / "o"))
  get = lambda r, v: result["roots"][r]["analysis"]["levels"]["0.01"][
      "comparisons"][v]
  assert get("etx20", "cwmp_p1")["verdict"] == "worse"
  assert get("etx20", "cwmp_p2")["verdict"] == "indistinguishable"  # all ties
  assert get("etx2", "cwmp_p1")["energy_ratio"]["mean"] == pytest.approx(1.05)
  assert get("etx2", "cwmp_p1")["verdict"] == "not matched"
  # A looser tolerance accepts the 5% mismatch: then it is "better".
  loose = cwmp_report.write_report([unmatched], str(tmp_path / "o2"),
                                   tol=0.06)
  assert loose["roots"]["etx2"]["analysis"]["levels"]["0.01"]["comparisons"][
      "cwmp_p1"]["verdict"] == "better"


def test_too_few_seeds_incomplete_runs_and_bad_names(tmp_path):
  root = _root(tmp_path, "etx0", [0.5, 0.5], [0.6, 0.6], [0.4, 0.4])
  _write(root, "topk_5pct", 0, _records(0.5, E_ROUND, rounds=10))  # running
  result = cwmp_report.write_report([root], str(tmp_path / "o"))
  res = result["roots"]["etx0"]
  assert res["left_out"] == ["topk_5pct/seed0 (10 of 20 rounds)"]
  assert res["analysis"]["levels"]["0.01"]["comparisons"]["cwmp_p1"][
      "verdict"] == "too few seeds"
  _write(root, "fedavg", 0, _records(0.5, E_ROUND))
  with pytest.raises(ValueError, match="not named <family>_<L>pct"):
    cwmp_report.write_report([root], str(tmp_path / "o3"))
