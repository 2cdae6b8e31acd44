"""The binaries' shared entry point: the work-directory guard and flags."""

import os
import subprocess
import sys

from experiments.dp_train.configs import smoke
from sparsejax import training

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SMOKE = os.path.join(ROOT, "experiments/dp_train/configs/smoke.py")


def _binary(*flags):
  return subprocess.run(
      [sys.executable, "-m", "experiments.dp_train.main",
       f"--config={SMOKE}", *flags],
      capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def test_print_config_prints_the_resolved_config_and_runs_nothing(tmp_path):
  out = _binary("--print_config", "--config.num_steps=123",
                f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 0, out.stderr
  assert "num_steps: 123" in out.stdout
  assert not os.path.exists(tmp_path / "w")


def test_rerun_with_another_config_is_refused_with_a_diff(tmp_path):
  workdir = str(tmp_path / "w")
  with training.open_workdir(workdir, smoke.get_config()):
    pass  # what a first run of the smoke config leaves behind
  out = _binary(f"--workdir={workdir}", "--config.num_steps=9",
                "--config.optimizer.learning_rate=0.5")
  assert out.returncode != 0
  assert "num_steps: 8 -> 9" in out.stderr
  assert "optimizer.learning_rate" in out.stderr
  assert "--on_config_change" in out.stderr
  assert not os.path.exists(os.path.join(workdir, "summary.json"))


def test_second_run_on_a_locked_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / "w")
  with training.open_workdir(workdir, smoke.get_config()):
    out = _binary(f"--workdir={workdir}")
  assert out.returncode != 0
  assert "run.lock" in out.stderr
