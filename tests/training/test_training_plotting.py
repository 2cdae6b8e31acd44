"""Tests for sparsejax.training.plotting."""

import json
import os

import matplotlib.image
import pytest

from sparsejax.training import Column
from sparsejax.training import Plot
from sparsejax.training import bytes_to_target_table
from sparsejax.training import format_bytes
from sparsejax.training import format_table
from sparsejax.training import plot_curves
from sparsejax.training import plotting
from sparsejax.training import summarize
from sparsejax.training import write_summary


def _curve(rounds, bytes_per_round, accs):
  return [{"round": r, "bytes_sent": r * bytes_per_round, "test_accuracy": a}
          for r, a in zip(rounds, accs)]


RUNS = {
    "dense": _curve([1, 2, 3, 4], 1_000_000, [0.5, 0.7, 0.85, 0.9]),
    "top-k 1%": _curve([1, 2, 3, 4, 5], 20_000, [0.4, 0.6, 0.8, 0.86, 0.88]),
    "never": _curve([1, 2], 10, [0.1, 0.2]),
}


def test_plot_curves_writes_png(tmp_path):
  # Interleave training records without the y key: they must be skipped.
  runs = dict(RUNS)
  runs["dense"] = runs["dense"] + [{"round": 5, "loss": 0.1}]
  path = plot_curves(runs, str(tmp_path / "plots" / "acc_vs_bytes.png"),
                     title="accuracy vs bytes", target=0.85)
  with open(path, "rb") as f:
    data = f.read()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  assert len(data) > 10_000
  img = matplotlib.image.imread(path)
  assert img.ndim == 3 and img.shape[2] in (3, 4)
  assert img.shape[0] > 200 and img.shape[1] > 300
  assert img.std() > 0.01  # not a blank image


def test_plot_curves_linear_round_axis(tmp_path):
  path = plot_curves(RUNS, str(tmp_path / "acc_vs_round.png"), x="round",
                     logx=False)
  assert matplotlib.image.imread(path).shape[0] > 200


def test_bytes_to_target_table():
  rows = bytes_to_target_table(RUNS, 0.85)
  assert rows == [
      ("dense", 3, 3_000_000),
      ("top-k 1%", 4, 80_000),
      ("never", None, None),
  ]
  # Exactly equal counts as reached; x_keys order and a missing key.
  rows = bytes_to_target_table(RUNS, 0.7, x_keys=("bytes_sent", "time_s"))
  assert rows[0] == ("dense", 2_000_000, None)
  assert rows[1] == ("top-k 1%", 60_000, None)
  # Lower-is-better targets (a loss).
  loss_runs = {"a": [{"step": 1, "loss": 2.0}, {"step": 2},
                     {"step": 3, "loss": 0.4}]}
  assert bytes_to_target_table(loss_runs, 0.5, x_keys=("step",), y="loss",
                               higher_is_better=False) == [("a", 3)]


def test_format_table_markdown():
  rows = bytes_to_target_table(RUNS, 0.85)
  md = format_table(rows, ["method", "rounds", "bytes_sent"])
  lines = md.strip().split("\n")
  assert len(lines) == 5
  assert all(l.startswith("| ") and l.endswith(" |") for l in lines)
  assert [c.strip() for c in lines[0].strip("|").split("|")] == [
      "method", "rounds", "bytes_sent"]
  assert set(lines[1]) <= set("|-: ")
  assert lines[1].split("|")[2].strip().endswith(":")  # numeric: right
  cells = [c.strip() for c in lines[2].strip("|").split("|")]
  assert cells == ["dense", "3", "3 MB"]
  assert [c.strip() for c in lines[3].strip("|").split("|")] == [
      "top-k 1%", "4", "80 KB"]
  assert "not reached" in lines[4]
  with pytest.raises(ValueError):
    format_table([("a", 1)], ["x"])


def test_format_bytes():
  assert format_bytes(999) == "999 B"
  assert format_bytes(1500) == "1.5 KB"
  assert format_bytes(2_500_000_000) == "2.5 GB"


def _rows(table):
  return [[c.strip() for c in line.strip("|").split("|")]
          for line in table.strip().split("\n") if line.startswith("|")]


def test_summarize_one_seed_columns_baseline_and_target():
  runs = {k: [v] for k, v in RUNS.items()}
  columns = (Column("final acc", "test_accuracy"),
             Column("best acc", "test_accuracy", "max"),
             Column("bytes", "bytes_sent"))
  table, data = summarize(runs, columns, target=0.85,
                          target_keys=("round", "bytes_sent"),
                          baseline="dense", bytes_key="bytes_sent")
  rows = _rows(table)
  assert rows[0] == ["method", "final acc", "best acc", "bytes",
                     "bytes vs dense"]
  assert rows[2] == ["dense", "0.9", "0.9", "4 MB", "1.00x"]
  assert rows[3] == ["top-k 1%", "0.88", "0.88", "100 KB", "1/40"]
  assert rows[4] == ["never", "0.2", "0.2", "20 B", "1/200000"]
  assert rows[5] == ["method", "round to 0.85", "bytes sent to 0.85"]
  assert rows[7] == ["dense", "3", "3 MB"]
  assert rows[9] == ["never", "not reached", "not reached"]
  assert data["methods"]["top-k 1%"]["best acc"] == [0.88]
  assert data["to_target"]["methods"]["dense"] == {"round": [3],
                                                   "bytes_sent": [3_000_000]}


def test_summarize_seeds_mean_std_and_missing():
  seeds = {"a": [_curve([1, 2], 10, [0.5, 0.7]),
                 _curve([1, 2], 10, [0.5, 0.9])],
           "b": [_curve([1], 10, [0.6]), _curve([1], 10, [0.6])]}
  table, _ = summarize(seeds, (Column("final", "test_accuracy"),
                               Column("energy", "energy_joules")),
                       target=0.8, target_keys=("round",))
  rows = _rows(table)
  # mean 0.8, sample std of (0.7, 0.9) = 0.1414; equal values shown once.
  assert rows[2] == ["a", "0.8 ± 0.1414", "-"]
  assert rows[3] == ["b", "0.6", "-"]
  assert rows[6] == ["a", "2 (1/2 seeds)"]
  assert rows[7] == ["b", "not reached"]
  with pytest.raises(ValueError, match="no record with 'loss'"):
    summarize(seeds, (), y="loss")


def test_write_summary_files_and_plots(tmp_path):
  runs = {k: [v] for k, v in RUNS.items()}
  lines = []
  plots = (Plot("acc_vs_round.png", "round", "test_accuracy", logx=False),
           Plot("acc_vs_energy.png", "energy_joules", "test_accuracy"))
  table = write_summary(tmp_path, runs, (Column("final", "test_accuracy"),),
                        plots=plots, log_fn=lines.append)
  assert (tmp_path / "summary.md").read_text() == table + "\n"
  assert json.loads((tmp_path / "summary.json").read_text())["methods"][
      "dense"] == {"final": [0.9]}
  assert os.path.getsize(tmp_path / "acc_vs_round.png") > 1000
  assert not (tmp_path / "acc_vs_energy.png").exists()  # no run has x
  assert table in lines[0]


def test_seed_band_is_mean_and_min_max_on_shared_points(tmp_path):
  seeds = [_curve([1, 2, 3], 1000, [0.5, 0.6, 0.7]),
           _curve([1, 2], 3000, [0.3, 0.8])]  # the second ends earlier
  xs, mean, low, high = plotting._seed_curves(seeds, "bytes_sent",
                                              "test_accuracy", logx=True)
  assert len(xs) == 2  # only the points both seeds have
  assert mean == pytest.approx([0.4, 0.7])
  assert low == pytest.approx([0.3, 0.6]) and high == pytest.approx([0.5, 0.8])
  assert xs == pytest.approx([(r0["bytes_sent"] + r1["bytes_sent"]) / 2
                              for r0, r1 in zip(seeds[0], seeds[1])])
  path = plot_curves({"a": seeds, "b": RUNS["dense"]},
                     str(tmp_path / "bands.png"))
  assert matplotlib.image.imread(path).std() > 0.01


def test_line_styles_are_distinct_beyond_ten_methods():
  from sparsejax.training import plotting  # pylint: disable=g-import-not-at-top
  styles = plotting.line_styles(25)
  assert len(set(styles)) == 25
  assert styles[0] == ("C0", "-") and styles[10] == ("C0", "--")
  with pytest.raises(ValueError, match="at most 40"):
    plotting.line_styles(41)
