"""Tests for sparsejax.training.plotting."""

import matplotlib.image
import pytest

from sparsejax.training import bytes_to_target_table
from sparsejax.training import format_bytes
from sparsejax.training import format_table
from sparsejax.training import plot_curves


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
