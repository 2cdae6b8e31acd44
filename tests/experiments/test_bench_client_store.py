"""experiments/bench_federated/client_store: runs, table, snapshot timing."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_snapshot_run_saves_and_loads_the_whole_store(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.bench_federated.client_store",
       "--runs=mmap:12:snapshot", "--rounds=2",
       "--clients_per_round=2", "--local_steps=1",
       f"--store_dir={tmp_path / 'stores'}", f"--out={out}"],
      capture_output=True, text=True, check=False, timeout=900)
  assert proc.returncode == 0, proc.stderr[-2000:]
  snap, = json.loads(out.read_text())["results"]
  assert "error" not in snap
  # The snapshot is the store's bytes plus a small manifest.
  assert snap["store_bytes"] <= snap["snapshot_bytes"] < (
      snap["store_bytes"] + 10_000)
  assert snap["snapshot_save_seconds"] > 0 and snap["snapshot_load_seconds"] > 0
  # The printed table (the module is not imported here: it defines absl
  # flags at import, as other experiment modules do).
  assert "snapshot save s" in proc.stdout and "mmap:12:snapshot" in proc.stdout
  assert not list((tmp_path / "stores").glob("*"))  # cleaned up
