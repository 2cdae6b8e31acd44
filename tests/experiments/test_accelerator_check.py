"""The accelerator check at tiny sizes on CPU, so that it never rots.

The parts are split over three runs of the binary so that each test stays
under a minute on a loaded 2-core machine.
"""

import json
import os
import subprocess
import sys

import pytest

from experiments.accelerator_check import main as acc

REPO = acc.REPO


def _run(out_dir, *flags):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.accelerator_check.main", "--tiny",
       f"--out_dir={out_dir}", *flags],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  with open(os.path.join(out_dir, "results.json")) as f:
    results = json.load(f)
  with open(os.path.join(out_dir, "summary.md")) as f:
    return proc, results, f.read()


def _assert_ok(proc, results, parts):
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert list(results["parts"]) == list(parts)
  for name in parts:
    assert results["parts"][name]["status"] == "ok", name
  env = results["parts"]["env"]["result"]
  assert env["backend"] == "cpu" and env["jax"]


@pytest.mark.slow
def test_checks_and_pytest_parts(tmp_path):
  proc, results, summary = _run(tmp_path, "--parts=env", "--parts=checks",
                                "--parts=pytest")
  _assert_ok(proc, results, ("env", "checks", "pytest"))
  checks = results["parts"]["checks"]["result"]
  assert checks["pallas"] == {"block": 1024, "interpret": True}
  kernels = {(c["kernel"].split()[0], c["path"]) for c in checks["checks"]}
  for name in ("top_k_select", "threshold_select", "cost_weighted_select"):
    assert {(name, "xla"), (name, "pallas")} <= kernels
  assert ("blockwise_top_k_select", "xla") in kernels
  assert all(c["ok"] for c in checks["checks"])
  n = len(checks["checks"])
  assert f"{n} of {n} checks bitwise equal" in summary
  tests = results["parts"]["pytest"]["result"]
  assert tests["tests"] == 1 and tests["failures"] == tests["errors"] == 0


@pytest.mark.slow
def test_bench_select_and_step_parts(tmp_path):
  proc, results, summary = _run(tmp_path, "--parts=env",
                                "--parts=bench_select", "--parts=bench_step")
  _assert_ok(proc, results, ("env", "bench_select", "bench_step"))
  (run,) = results["parts"]["bench_select"]["result"]["runs"]
  assert (run["n"], run["ratio"]) == (65536, 0.01)
  methods = [r["method"] for r in run["rows"]]
  assert "sparsejax top_k_select (exact)" in methods
  assert "sparsejax cost_weighted_select, overflow branch" in methods
  step = results["parts"]["bench_step"]["result"]
  assert step["dense_ms"] > 0 and step["compressed_ms"] > 0
  # The CPU targets are evaluated from the same run; the GPU ones are not.
  names = {t["target"] for t in results["targets"]}
  assert "exact top-k in reads of the vector" in names
  assert "exact top-k time" not in names
  assert "## bench_select" in summary and "## Targets" in summary


@pytest.mark.slow
def test_bench_federated_part(tmp_path):
  proc, results, summary = _run(tmp_path, "--parts=env",
                                "--parts=bench_federated")
  _assert_ok(proc, results, ("env", "bench_federated"))
  engines = {r["engine"] for r in
             results["parts"]["bench_federated"]["result"]["results"]}
  assert {"loop", "vmap"} <= engines
  assert "## bench_federated" in summary


def test_failed_part_is_recorded_and_the_run_fails(tmp_path):
  proc, results, summary = _run(
      tmp_path, "--parts=pytest",
      "--pytest_targets=tests/kernels/test_no_such_file.py")
  assert proc.returncode == 1
  part = results["parts"]["pytest"]
  assert part["status"] == "failed" and part["returncode"] != 0
  assert "test_no_such_file" in part["log_tail"]
  assert "## pytest: failed" in summary


@pytest.mark.slow
@pytest.mark.parametrize("part", ["checks", "bench_select", "bench_step",
                                  "bench_federated"])
def test_gpu_preset_flags_are_accepted(tmp_path, part):
  # The GPU run must not be the first to find a renamed flag: parse the full
  # preset's flags with the binary's own flag definitions (nothing runs).
  argv = acc.part_command(part, acc.PRESETS["full"], str(tmp_path / "x"))
  assert argv[1] == "-m"
  module, flags = argv[2], argv[3:]
  code = (f"import sys, {module}; from absl import flags; "
          "flags.FLAGS(['prog'] + sys.argv[1:])")
  proc = subprocess.run([sys.executable, "-c", code, *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
