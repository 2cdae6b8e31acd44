"""Tests for sparsejax.training.workdir: one run per directory, config kept."""

import json
import logging
import os
import signal
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import pytest

from sparsejax.training import ConfigMismatchError
from sparsejax.training import open_workdir
from sparsejax.training import WorkdirLockedError
from sparsejax.training import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _config(**changes):
  config = ml_collections.ConfigDict()
  config.num_steps = 200
  config.optimizer = {"name": "sgd", "learning_rate": 0.05}
  config.model = {"name": "mlp", "kwargs": {"features": (128, 128)}}
  config.dtype = jnp.bfloat16
  config.loss = lambda x: x  # Same qualified name each time it is built.
  for key, value in changes.items():
    parent = config
    *path, last = key.split(".")
    for p in path:
      parent = parent[p]
    parent[last] = value
  return config


def _run(wd, config, on_change="refuse", files=("metrics.jsonl",)):
  with open_workdir(wd, config, on_change) as w:
    for name in files:
      with open(os.path.join(wd, name), "a") as f:
        f.write("x\n")
  return w


def _history(wd):
  with open(os.path.join(wd, workdir_lib.HISTORY_FILE)) as f:
    return [json.loads(line) for line in f]


def test_first_run_stores_config_and_same_config_resumes(tmp_path):
  wd = str(tmp_path / "run")
  with open_workdir(wd, _config()) as w:
    assert w.status == "new"
    assert os.path.exists(os.path.join(wd, workdir_lib.LOCK_FILE))
  assert not os.path.exists(os.path.join(wd, workdir_lib.LOCK_FILE))
  with open(os.path.join(wd, "config.json")) as f:
    stored = json.load(f)
  assert stored["model"]["kwargs"]["features"] == [128, 128]
  assert stored["dtype"] == "jax.numpy.bfloat16"
  assert stored["loss"].endswith("_config.<locals>.<lambda>")
  assert _run(wd, _config()).status == "resumed"  # A fresh, equal ConfigDict.
  assert [r["event"] for r in _history(wd)] == ["created"]


def test_changed_config_is_refused_with_a_diff(tmp_path):
  wd = str(tmp_path / "run")
  _run(wd, _config())
  new = _config(num_steps=400, **{"optimizer.learning_rate": 0.1,
                                  "model.kwargs.features": (256, 128)})
  with pytest.raises(ConfigMismatchError) as info:
    _run(wd, new)
  assert info.value.diff == ["model.kwargs.features.0: 128 -> 256",
                             "num_steps: 200 -> 400",
                             "optimizer.learning_rate: 0.05 -> 0.1"]
  for line in info.value.diff:
    assert line in str(info.value)
  assert "on_change='restart'" in str(info.value)
  assert "--on_config_change" in str(info.value)
  with open(os.path.join(wd, "config.json")) as f:
    assert json.load(f)["num_steps"] == 200  # Untouched.
  assert _run(wd, _config()).status == "resumed"  # The lock was released.


def test_added_and_removed_keys(tmp_path):
  assert workdir_lib.config_diff({"a": 1, "b": {"c": 2}}, {"a": 1, "d": [3]}) \
      == ["b.c: 2 -> (absent)", "d.0: (absent) -> 3"]


def test_restart_moves_the_old_run_aside(tmp_path):
  wd = str(tmp_path / "run")
  _run(wd, _config(), files=("metrics.jsonl", "summary.md"))
  os.makedirs(os.path.join(wd, "dense", "checkpoints", "3"))
  w = _run(wd, _config(num_steps=400), "restart", files=("metrics.jsonl",))
  assert w.status == "restarted" and w.diff == ("num_steps: 200 -> 400",)
  prev = w.previous
  assert os.path.dirname(prev) == os.path.abspath(wd)
  assert os.path.basename(prev).startswith("previous-")
  assert sorted(os.listdir(prev)) == ["config.json", "config_history.jsonl",
                                      "dense", "metrics.jsonl", "summary.md"]
  with open(os.path.join(prev, "metrics.jsonl")) as f:
    assert f.read() == "x\n"  # The old run's records, kept.
  assert sorted(os.listdir(wd)) == sorted(
      ["config.json", "config_history.jsonl", "metrics.jsonl",
       os.path.basename(prev)])
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    assert f.read() == "x\n"  # Only the new run's record.
  assert [r["event"] for r in _history(wd)] == ["restarted"]
  # A second restart keeps the first moved-aside run where it is.
  w2 = _run(wd, _config(num_steps=800), "restart")
  assert w2.previous != prev and os.path.isdir(prev)
  assert os.path.basename(prev) not in os.listdir(w2.previous)


def test_accept_resumes_and_records_the_change(tmp_path):
  wd = str(tmp_path / "run")
  _run(wd, _config())
  w = _run(wd, _config(num_steps=400), "accept")
  assert w.status == "accepted" and w.diff == ("num_steps: 200 -> 400",)
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    assert f.read() == "x\nx\n"  # The run continued in place.
  with open(os.path.join(wd, "config.json")) as f:
    assert json.load(f)["num_steps"] == 400
  history = _history(wd)
  assert [r["event"] for r in history] == ["created", "accepted"]
  assert history[1]["changes"] == ["num_steps: 200 -> 400"]
  assert history[1]["config"]["num_steps"] == 400
  assert _run(wd, _config(num_steps=400)).status == "resumed"


def test_damaged_config_file_is_named(tmp_path):
  wd = str(tmp_path / "run")
  _run(wd, _config())
  path = os.path.join(wd, "config.json")
  with open(path, "w") as f:
    f.write('{"num_steps": ')
  with pytest.raises(ValueError, match=path):
    _run(wd, _config())
  assert _run(wd, _config(), "restart").status == "restarted"


def test_run_from_before_configs_were_stored(tmp_path, caplog):
  wd = tmp_path / "run"
  wd.mkdir()
  (wd / "metrics.jsonl").write_text("x\n")
  with caplog.at_level(logging.WARNING):
    assert _run(str(wd), _config()).status == "resumed"
  assert "without config.json" in caplog.text
  assert (wd / "config.json").exists()


def test_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="on_change must be one of"):
    _run(str(tmp_path), _config(), "overwrite")
  with pytest.raises(TypeError, match="config must be a mapping"):
    _run(str(tmp_path), [("num_steps", 1)])


def test_second_run_in_same_process_is_refused(tmp_path):
  wd = str(tmp_path / "run")
  lock = os.path.join(wd, workdir_lib.LOCK_FILE)
  with open_workdir(wd, _config()):
    with pytest.raises(WorkdirLockedError) as info:
      _run(wd, _config())
    assert lock in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    assert os.path.exists(lock)  # The refused run left the lock alone.
  with pytest.raises(RuntimeError, match="boom"):
    with open_workdir(wd, _config()):
      raise RuntimeError("boom")
  assert _run(wd, _config()).status == "resumed"  # Released both times.


HOLDER = """
import sys
from sparsejax.training import workdir
with workdir.open_workdir(sys.argv[1], {"num_steps": 200}, primary=True):
  print("locked", flush=True)
  sys.stdin.read()
"""


@pytest.mark.slow
def test_other_process_holds_then_dies(tmp_path, caplog):
  wd = str(tmp_path / "run")
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, wd], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
  try:
    assert holder.stdout.readline() == b"locked\n"
    with pytest.raises(WorkdirLockedError, match=f"pid {holder.pid} on host"):
      _run(wd, {"num_steps": 200})
  finally:
    holder.send_signal(signal.SIGKILL)  # No clean-up: the lock file stays.
    holder.wait()
  assert os.path.exists(os.path.join(wd, workdir_lib.LOCK_FILE))
  with caplog.at_level(logging.WARNING):
    with open_workdir(wd, {"num_steps": 200}) as w:
      with open(os.path.join(wd, workdir_lib.LOCK_FILE)) as f:
        assert json.load(f)["pid"] == os.getpid()
  assert w.status == "resumed"
  assert f"left by pid {holder.pid}" in caplog.text
