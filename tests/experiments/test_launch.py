"""The binaries' shared entry point: work-directory guard, flags, help, data
sources and output."""

import importlib
import os
import re
import subprocess
import sys

import pytest

from experiments import launch
from experiments.dp_train.configs import smoke
from sparsejax import data
from sparsejax import training

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SMOKE = os.path.join(ROOT, "experiments/dp_train/configs/smoke.py")


def _binary(*flags):
  return subprocess.run(
      [sys.executable, "-m", "experiments.dp_train.main",
       f"--config={SMOKE}", *flags],
      capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


@pytest.mark.slow
def test_print_config_prints_the_resolved_config_and_runs_nothing(tmp_path):
  out = _binary("--print_config", "--config.num_steps=123",
                f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 0, out.stderr
  assert "num_steps: 123" in out.stdout
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow
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


@pytest.mark.slow
def test_second_run_on_a_locked_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / "w")
  with training.open_workdir(workdir, smoke.get_config()):
    out = _binary(f"--workdir={workdir}")
  assert out.returncode != 0
  assert "run.lock" in out.stderr


BINARIES = ("dp_train", "federated", "kta")


def _run_module(binary, *flags, timeout=300):
  return subprocess.run(
      [sys.executable, "-m", f"experiments.{binary}.main", *flags],
      capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False)


def _config_modules(binary):
  folder = os.path.join(ROOT, "experiments", binary, "configs")
  return sorted(f[:-3] for f in os.listdir(folder)
                if f.endswith(".py") and f != "__init__.py")


@pytest.mark.slow
@pytest.mark.parametrize("binary", BINARIES)
@pytest.mark.parametrize("help_flag", ["--helpfull", "--help"])
def test_help_lists_flags_and_every_config_field(binary, help_flag):
  out = _run_module(binary, help_flag)
  default = importlib.import_module(f"experiments.{binary}.configs.default")
  for flag in ("--workdir", "--config:", "--[no]print_config",
               "--on_config_change"):
    assert flag in out.stdout, flag
  for field, value in launch.config_fields(default.get_config()):
    assert f"--config.{field}: " in out.stdout, field
  # A field's line: its meaning, then its default.
  entry = out.stdout.split("--config.dataset.source: ", 1)[1]
  assert entry.startswith(default.FIELD_HELP["dataset.source"][:30])
  assert "(default: 'synthetic')" in " ".join(entry.split()[:40])


@pytest.mark.slow
def test_help_of_a_named_config_lists_its_own_fields():
  sahu = os.path.join(ROOT, "experiments/dp_train/configs/sahu_mnist.py")
  out = _run_module("dp_train", f"--config={sahu}:0.01", "--helpfull")
  assert "--config.calibration_start: " in out.stdout
  assert "--config.methods.ef_top_k_global.ratio: " in out.stdout
  assert "(default: '0.01')" in out.stdout
  assert "--config.dataset.name: " in out.stdout
  assert "(default: 'mnist')" in out.stdout


@pytest.mark.parametrize("binary", BINARIES)
def test_every_default_field_has_a_one_line_meaning(binary):
  default = importlib.import_module(f"experiments.{binary}.configs.default")
  for field, _ in launch.config_fields(default.get_config()):
    text = launch.field_help(default.FIELD_HELP, field)
    assert text and "\n" not in text, field
  # No entry documents a field that does not exist.
  fields = [f for f, _ in launch.config_fields(default.get_config())]
  for key in default.FIELD_HELP:
    assert any(f == key or f.startswith(key + ".") for f in fields), key


@pytest.mark.parametrize("binary", BINARIES)
def test_every_config_names_a_valid_source_and_defaults_run_offline(binary):
  for name in _config_modules(binary):
    module = importlib.import_module(f"experiments.{binary}.configs.{name}")
    if not hasattr(module, "get_config"):
      continue  # shared helpers (sapef_common)
    config = module.get_config()
    assert config.dataset.source in data.SOURCES, name
    launch.check_dataset(config.dataset)
    if name in ("default", "smoke"):
      assert config.dataset.source == "synthetic", name
    elif config.dataset.name != "synthetic":  # a named real-data config
      assert config.dataset.source == "files", name


def test_bad_source_fails_naming_the_field_and_the_choices():
  with pytest.raises(ValueError, match=r"config\.dataset\.source must be one "
                     r"of \('files', 'tfds', 'synthetic'\).*'http'"):
    launch.load_dataset({"name": "mnist", "source": "http"})
  with pytest.raises(ValueError, match=r"config\.dataset.*source='tfds'.*"
                     "femnist"):
    launch.load_dataset({"name": "femnist", "source": "tfds"})
  with pytest.raises(ValueError, match="config.dataset.source"):
    launch.load_dataset({"name": "mnist"})  # a config without source


def test_missing_files_message_gives_the_source_flags(tmp_path):
  spec = {"name": "mnist", "source": "files", "data_dir": str(tmp_path)}
  with pytest.raises(launch.DataUnavailableError) as e:
    launch.load_dataset(spec)
  msg = str(e.value)
  assert str(tmp_path / "mnist") in msg
  assert "--config.dataset.source=tfds" in msg
  assert "--config.dataset.source=synthetic" in msg


def test_synthetic_source_stands_in_for_the_named_dataset():
  train, test = launch.load_dataset(
      {"name": "cifar10", "source": "synthetic",
       "kwargs": {"num_train": 40, "num_test": 8}})
  assert train.x.shape == (40, 32, 32, 3) and test.x.shape == (8, 32, 32, 3)
  assert train.num_classes == 10


@pytest.mark.slow
def test_binary_without_the_files_exits_with_the_hint(tmp_path):
  mnist = os.path.join(ROOT, "experiments/federated/configs/mnist.py")
  out = _run_module("federated", f"--config={mnist}",
                    f"--config.dataset.data_dir={tmp_path}",
                    f"--workdir={tmp_path / 'w'}")
  assert out.returncode != 0
  assert "--config.dataset.source=synthetic" in out.stderr
  assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_binary_output_is_short_lines_without_prefixes(tmp_path):
  smoke = os.path.join(ROOT, "experiments/federated/configs/smoke.py")
  out = _run_module("federated", f"--config={smoke}",
                    f"--workdir={tmp_path}", timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stderr.splitlines()
  progress = [line for line in lines if " rounds/s | ETA " in line]
  assert len(progress) == 4  # 2 methods x rounds 2 and 4
  assert all(len(line) <= 100 for line in progress), progress
  assert all(line.startswith("round ") for line in progress)
  assert not any(re.match(r"[IWEF]\d{4} ", line) for line in lines)
  assert "Unable to initialize backend" not in out.stderr
  # The energy column does not apply to these methods: "-", not a number.
  table = [line for line in lines if line.startswith("| fedavg ")][0]
  assert table.rstrip(" |").endswith("| -")
