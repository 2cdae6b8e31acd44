"""The SA-PEF report script on synthetic runs (no training)."""

import os

import numpy as np
import pytest

from experiments.federated import report
from tests.federated import run_files

FINAL = 0.8  # FedAvg's final accuracy: targets 0.4, 0.48, 0.56 at .5/.6/.7


def _records(reach_round, rounds=40, final=0.7):
  """Accuracy 0 until ``reach_round``, then ``final`` (evaluated every 5)."""
  out = []
  for r in range(1, rounds + 1):
    rec = {"round": r, "uplink_bytes": 1000.0 * r, "total_bytes": 3000.0 * r,
           "residual_norm": 1.0 / r, "grad_mismatch": 2.0 / r,
           "train_loss": 3.0 / r}
    if r % 5 == 0:
      rec["test_accuracy"] = (final if reach_round is not None
                              and r >= reach_round else 0.1)
    out.append(rec)
  return out


_write = run_files.write_run


def _runs(tmp_path, ef_rounds, sapef_rounds):
  root = str(tmp_path / "runs")
  for s, (e, a) in enumerate(zip(ef_rounds, sapef_rounds)):
    _write(root, "fedavg", s, _records(5, final=FINAL))
    _write(root, "ef", s, _records(e))
    _write(root, "sapef", s, _records(a))
  return root


@pytest.mark.slow
def test_faster_when_the_paired_interval_is_below_zero(tmp_path):
  root = _runs(tmp_path, [20, 20, 25, 25], [15, 15, 15, 15])
  out = str(tmp_path / "out")
  result = report.write_report([root], out)
  assert [t["accuracy"] for t in result["targets"]] == pytest.approx(
      [0.4, 0.48, 0.56])
  p = result["targets"][0]["paired"]
  assert p["diffs"] == [-5, -5, -10, -10]
  assert p["mean"] == pytest.approx(-7.5)
  assert p["std"] == pytest.approx(np.std([5, 5, 10, 10], ddof=1))
  # t_{0.975, 3} = 3.182446: half width 3.1824 * 2.8868 / 2 = 4.5935.
  assert p["ci95"] == pytest.approx([-7.5 - 4.5935, -7.5 + 4.5935], abs=1e-3)
  assert (p["faster"], p["ties"], p["slower"]) == (4, 0, 0)
  assert all(t["verdict"] == "faster" for t in result["targets"])
  assert result["verdict"].startswith("sapef reaches every target faster")
  ef = result["methods"]["ef"]["to_target"]["0.5"]
  assert ef["round"]["mean"] == pytest.approx(22.5)
  assert ef["uplink_bytes"]["mean"] == pytest.approx(22500.0)
  for name in ("report.md", "report.json", "accuracy_vs_round.png",
               "accuracy_vs_uplink_bytes.png", "mechanism_vs_round.png"):
    assert os.path.isfile(os.path.join(out, name)), name
  text = open(os.path.join(out, "report.md")).read()
  assert "**Verdict.** sapef reaches every target faster" in text


@pytest.mark.slow
def test_small_or_mixed_differences_are_inconclusive(tmp_path):
  # diffs -5, -10, -5: interval [-13.8, +0.5] contains 0.
  root = _runs(tmp_path, [20, 25, 20], [15, 15, 15])
  result = report.write_report([root], str(tmp_path / "out"))
  assert result["targets"][0]["paired"]["ci95"][1] > 0
  assert result["targets"][0]["verdict"] == "inconclusive"
  assert "not significantly faster or slower" in result["verdict"]


@pytest.mark.slow
def test_not_reached_counts_as_slower_and_is_reported(tmp_path):
  root = _runs(tmp_path, [10, 10, 10], [15, None, 20])
  result = report.write_report([root], str(tmp_path / "out"))
  p = result["targets"][0]["paired"]
  # seed 1 never reaches: counted at the last round, 40 - 10 = 30.
  assert (p["faster"], p["slower"], p["diffs"]) == (0, 3, [5, 30, 10])
  assert p["censored"] == 1 and p["ci95"][0] < 0  # too spread: no verdict
  assert result["targets"][0]["verdict"] == "inconclusive"
  assert result["methods"]["sapef"]["to_target"]["0.5"]["round"]["n"] == 2
  text = open(str(tmp_path / "out" / "report.md")).read()
  assert "(2/3 seeds)" in text


@pytest.mark.slow
def test_never_reaching_in_every_seed_is_slower(tmp_path):
  root = _runs(tmp_path, [10, 10, 15], [None, None, None])
  result = report.write_report([root], str(tmp_path / "out"))
  p = result["targets"][0]["paired"]
  assert p["diffs"] == [30, 30, 25] and p["censored"] == 3
  assert result["targets"][0]["verdict"] == "slower"
  assert result["verdict"].startswith("sapef reaches every target slower")


def test_roots_are_merged_by_seed_and_checked(tmp_path):
  root = _runs(tmp_path, [20, 20, 20], [15, 15, 15])
  extra = str(tmp_path / "ablation")
  for s in range(3):
    _write(extra, "sapef_mean", s, _records(30))
  runs = report.load_runs([root, extra])
  assert sorted(runs) == ["ef", "fedavg", "sapef", "sapef_mean"]
  assert sorted(runs["sapef_mean"]) == ["seed0", "seed1", "seed2"]
  with pytest.raises(ValueError, match="two roots"):
    report.load_runs([root, root])
  with pytest.raises(FileNotFoundError, match="not a directory"):
    report.load_runs([str(tmp_path / "missing")])
  with pytest.raises(ValueError, match="'cser' not found"):
    report.analyse(runs, (0.5,), "fedavg", "sapef", "cser")


@pytest.mark.slow
def test_incomplete_runs_are_left_out_and_named(tmp_path):
  root = _runs(tmp_path, [20, 20, 20], [15, 15, 15])
  _write(root, "sapef", 3, _records(15, rounds=12))  # still running
  for m in ("fedavg", "ef"):
    _write(root, m, 3, _records(10))
  out = tmp_path / "out"
  result = report.write_report([root], str(out))
  assert result["incomplete_runs_left_out"] == ["sapef/seed3 (12 of 40 rounds)"]
  assert result["targets"][0]["paired"]["seeds"] == 3
  assert "Incomplete runs left out: sapef/seed3" in open(
      out / "report.md").read()


def test_alpha_sweep_table_and_plot(tmp_path):
  """Rows by ascending alpha; rounds over the seeds that reach a target."""
  root = _runs(tmp_path, [20, 30, 25], [15, 15, 20])
  for s, r in enumerate([10, None, 10]):  # alpha 0.5 misses on seed 1
    _write(root, "sapef_a050", s, _records(r))
  out = str(tmp_path / "out")
  result = report.write_report([root], out, fractions=(0.5,),
                               sweep={"sapef": 0.85, "ef": 0.0,
                                      "sapef_a050": 0.5})
  rows = result["sweep"]
  assert [r["alpha"] for r in rows] == [0.0, 0.5, 0.85]
  assert rows[0]["rounds"]["0.5"]["mean"] == pytest.approx(25.0)
  assert rows[1]["rounds"]["0.5"]["reached"] == 2
  assert rows[1]["rounds"]["0.5"]["mean"] == pytest.approx(10.0)
  assert rows[1]["final_accuracy"]["mean"] == pytest.approx(
      (0.7 + 0.1 + 0.7) / 3)
  assert os.path.isfile(os.path.join(out, "alpha_sweep.png"))
  text = open(os.path.join(out, "report.md")).read()
  assert "| 0.5 | sapef_a050 |" in text and "(2/3)" in text
  with pytest.raises(ValueError, match=r"'sapef_a025' not found"):
    report.write_report([root], out, sweep={"sapef_a025": 0.25})


def test_neither_reaching_is_not_a_tie_and_final_accuracy_is_paired(tmp_path):
  root = str(tmp_path / "runs")
  for s, (e, a) in enumerate([(0.30, 0.45), (0.25, 0.40), (0.35, 0.42)]):
    _write(root, "fedavg", s, _records(5, final=FINAL))
    _write(root, "ef", s, _records(10, final=e))
    _write(root, "sapef", s, _records(10, final=a))
  out = tmp_path / "out"
  result = report.write_report([root], str(out), fractions=(0.6, 0.9))
  assert [t["verdict"] for t in result["targets"]] == ["neither reached"] * 2
  f = result["final_paired"]
  assert f["diffs"] == pytest.approx([0.15, 0.15, 0.07])
  assert (f["higher"], f["lower"]) == (3, 0)
  assert f["mean"] == pytest.approx(0.37 / 3)
  # t_{0.975, 2} = 4.302653: half width 4.3027 * 0.046188 / sqrt(3).
  assert f["ci95"] == pytest.approx([0.37 / 3 - 0.114738, 0.37 / 3 + 0.114738],
                                    abs=1e-5)
  text = open(out / "report.md").read()
  assert "| neither reached |" in text
  assert ("Final test accuracy, sapef minus ef per seed: +0.1500, +0.1500, "
          "+0.0700") in text and "higher on 3, lower on 0 of 3 seeds" in text


def test_sweep_flag_parsing():
  assert report.parse_sweep(["ef:0", "sapef_a025:0.25"]) == {
      "ef": 0.0, "sapef_a025": 0.25}
  with pytest.raises(Exception, match=r"method:alpha"):
    report.parse_sweep(["ef=0"])


def test_bonferroni_interval_is_wider_and_named_in_the_verdict(tmp_path):
  root = _runs(tmp_path, [20, 20, 25, 25], [15, 15, 15, 15])
  result = report.write_report([root], str(tmp_path / "out"))
  p = result["targets"][0]["paired"]
  # t_{1 - 0.05/6, 3} = 4.8567 for the 3 targets: half width
  # 4.8567 * 2.8868 / 2 = 7.010 (95%: 4.5935).
  assert p["ci_family"] == pytest.approx([-7.5 - 7.010, -7.5 + 7.010],
                                         abs=1e-3)
  assert result["verdict"].endswith(
      "Corrected for the 3 targets tested (Bonferroni, level 0.9833): sapef "
      "is faster than ef at 50%, 60%, 70% and slower at no target.")
