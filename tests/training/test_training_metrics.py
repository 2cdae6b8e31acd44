"""Tests for sparsejax.training.metrics."""

import csv
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.training import MetricsWriter
from sparsejax.training import read_metrics
from sparsejax.training import to_python_scalar


def _csv_rows(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


def test_writes_jsonl_and_csv_with_python_scalars(tmp_path):
  w = MetricsWriter(str(tmp_path))
  w.write({"step": np.int64(1), "loss": jnp.float32(0.5),
           "bytes_sent": jnp.array(1024, jnp.int32)})
  w({"step": 2, "loss": np.float32(0.25), "bytes_sent": 2048})

  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l) for l in lines] == [
      {"step": 1, "loss": 0.5, "bytes_sent": 1024},
      {"step": 2, "loss": 0.25, "bytes_sent": 2048},
  ]
  recs = read_metrics(str(tmp_path))
  assert type(recs[0]["step"]) is int
  assert type(recs[0]["loss"]) is float
  assert type(recs[0]["bytes_sent"]) is int
  assert _csv_rows(tmp_path / "metrics.csv") == [
      ["step", "loss", "bytes_sent"],
      ["1", "0.5", "1024"],
      ["2", "0.25", "2048"],
  ]


def test_csv_header_widens_when_new_keys_appear(tmp_path):
  w = MetricsWriter(str(tmp_path), name="m")
  w.write({"loss": 1.0, "step": 1})
  w.write({"step": 2, "test_accuracy": 0.75})
  w.write({"step": 3, "loss": 0.5})
  rows = _csv_rows(tmp_path / "m.csv")
  assert rows == [
      ["step", "loss", "test_accuracy"],  # step key first
      ["1", "1.0", ""],
      ["2", "", "0.75"],
      ["3", "0.5", ""],
  ]
  assert len(read_metrics(str(tmp_path), "m")) == 3


def test_round_is_a_step_key_and_missing_step_raises(tmp_path):
  w = MetricsWriter(str(tmp_path))
  w.write({"round": 3, "acc": 0.1})
  with pytest.raises(ValueError, match="step key"):
    w.write({"acc": 0.2})
  with pytest.raises(ValueError, match="scalar"):
    w.write({"step": 1, "v": np.zeros(3)})


def test_to_python_scalar():
  assert to_python_scalar(jnp.bfloat16(1.5)) == 1.5
  assert type(to_python_scalar(jnp.bfloat16(1.5))) is float
  assert to_python_scalar(np.bool_(True)) is True
  assert type(to_python_scalar(jnp.uint32(7))) is int
  assert to_python_scalar(np.array([[2.0]])) == 2.0
  assert to_python_scalar(None) is None and to_python_scalar("a") == "a"


def test_resume_truncates_later_records(tmp_path):
  d = str(tmp_path)
  w = MetricsWriter(d)
  for s in range(1, 7):
    w.write({"step": s, "loss": 1.0 / s})
  w.write({"step": 6, "test_accuracy": 0.9})  # an eval record at step 6

  # Resume from the checkpoint at step 4: steps 5 and 6 will be redone.
  w2 = MetricsWriter(d, resume_step=4)
  assert [r["step"] for r in read_metrics(d)] == [1, 2, 3, 4]
  # The CSV no longer has the test_accuracy column that only step 6 had.
  assert _csv_rows(tmp_path / "metrics.csv")[0] == ["step", "loss"]
  for s in range(5, 7):
    w2.write({"step": s, "loss": 1.0 / s})
  recs = read_metrics(d)
  assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
  rows = _csv_rows(tmp_path / "metrics.csv")
  assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
  assert w2.records == recs


def test_fresh_writer_replaces_existing_files(tmp_path):
  d = str(tmp_path)
  MetricsWriter(d).write({"step": 1, "loss": 1.0})
  MetricsWriter(d)  # resume_step=None: a fresh run
  assert read_metrics(d) == []
  assert (tmp_path / "metrics.csv").read_text() == ""


def test_truncated_last_line_is_ignored(tmp_path):
  d = str(tmp_path)
  w = MetricsWriter(d)
  w.write({"step": 1, "loss": 1.0})
  w.write({"step": 2, "loss": 0.5})
  with open(os.path.join(d, "metrics.jsonl"), "a") as f:
    f.write('{"step": 3, "lo')  # crash mid-write
  assert [r["step"] for r in read_metrics(d)] == [1, 2]
  MetricsWriter(d, resume_step=2)
  assert [r["step"] for r in read_metrics(d)] == [1, 2]


def test_inactive_writer_writes_nothing(tmp_path):
  w = MetricsWriter(str(tmp_path / "sub"), active=False)
  assert w.write({"step": 1, "x": np.float64(2)}) == {"step": 1, "x": 2.0}
  assert not (tmp_path / "sub").exists()
