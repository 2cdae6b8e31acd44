"""What every experiment binary shares: forced CPU devices, the absl main, and
reading the ``dataset``, ``model`` and ``partition`` sections of a config.

A binary's ``main.py`` is::

    from experiments import launch
    launch.force_host_devices(8)   # before jax is imported
    from experiments.dp_train import train
    if __name__ == "__main__":
      launch.run(train.train_and_evaluate, __file__, "/tmp/sparsejax_dp")

``--workdir`` (metrics, checkpoints, plots; rerun to resume) and ``--config``
(an ml_collections config file, default ``configs/default.py`` beside the
binary) are the flags, as in the flax examples; ``--config.<field>=value``
overrides a field. ``--help`` lists them all, every config field with its
default and the one-line meaning from the config module's ``FIELD_HELP``
(the default config's, completed by the chosen config's). The work
directory belongs to one run (:func:`sparsejax.training.open_workdir`): a
second run on it at the same time is refused, and so is a rerun with another
config unless
``--on_config_change=restart`` (the old run is moved to ``previous-<time>/``)
or ``accept`` (resume under the new config). ``--print_config`` prints the
resolved config and exits.

Output: INFO lines (progress, summaries) are printed as they are, without the
absl prefix; warnings and errors keep their level name.
"""

import importlib.util
import logging as logging_lib
import os
import sys

#: One-line meanings of the ``dataset`` fields every binary's config has
#: (merged into each ``configs/default.py``'s ``FIELD_HELP``).
DATASET_FIELD_HELP = {
    "dataset": "The data (sparsejax.data.load_dataset).",
    "dataset.name": "Dataset: synthetic, mnist, fashion_mnist, cifar10, "
                    "femnist, ag_news (emnist with source=tfds).",
    "dataset.source": "Where data comes from: files (offline copies in "
                      "data_dir), tfds (download) or synthetic (generated).",
    "dataset.data_dir": "Offline copies (files) or tfds data directory; "
                        "None: $SPARSEJAX_DATA_DIR, else ../shared/data.",
    "dataset.kwargs": "Loader options, e.g. num_train, shape, class_sep.",
}

# Forced host devices share one CPU thread pool. A device blocked in a
# collective holds a pool thread, so a device whose op (a sort, say) waits for
# pool workers can starve: intra-op Eigen threading is turned off, which also
# fits P device threads on few cores. XLA aborts a CPU collective whose
# participants do not all arrive within 40 s, which a loaded machine can
# exceed: the limit is raised to 10 minutes.
HOST_DEVICE_FLAGS = ("--xla_force_host_platform_device_count={n} "
                     "--xla_cpu_multi_thread_eigen=false "
                     "--xla_cpu_collective_call_terminate_timeout_seconds=600")


def force_host_devices(n: int = 8) -> None:
  """On a CPU, ``n`` forced host devices (no effect on GPU/TPU devices).

  Adds the flags to ``XLA_FLAGS`` unless a device count is already set;
  call before jax is imported.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICE_FLAGS.format(n=n)}".strip()


class DataUnavailableError(RuntimeError):
  """The config's dataset cannot be read here; the message says what to do."""


#: The absl flags that print help and exit.
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?", "h")


def run(train_and_evaluate, main_file: str, default_workdir: str) -> None:
  """Defines ``--workdir``/``--config`` and runs ``train_and_evaluate``."""
  # pylint: disable=g-import-not-at-top
  from absl import app
  from absl import flags
  from absl import logging
  from ml_collections import config_flags

  from sparsejax import training

  default_config = os.path.join(os.path.dirname(main_file),
                                "configs/default.py")
  flags.DEFINE_string("workdir", default_workdir,
                      "Metrics, checkpoints and plots; rerun to resume.")
  config_flags.DEFINE_config_file(
      "config", default_config,
      "Experiment configuration: a config file, optionally 'file.py:arg'; "
      "override a field with --config.<field>=value (fields listed below).",
      lock_config=True)
  flags.DEFINE_enum(
      "on_config_change", "refuse", ["refuse", "restart", "accept"],
      "When --workdir holds a run with another config: refuse (print the "
      "differences and stop), restart (move the old run to previous-<time>/ "
      "and start fresh) or accept (resume under the new config).")
  flags.DEFINE_bool("print_config", False,
                    "Print the resolved config and exit.")
  names = ["workdir", "config", "on_config_change", "print_config"]
  if _wants_help(sys.argv):
    names += define_config_field_flags(sys.argv, default_config)
  for name in names:  # shown by --help, not only by --helpfull
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

  def main(argv):
    del argv
    if flags.FLAGS.print_config:
      print(flags.FLAGS.config)
      return
    logging.set_verbosity(logging.INFO)
    plain_log_lines()
    training.quiet_checkpoint_logs()
    try:
      with training.open_workdir(flags.FLAGS.workdir, flags.FLAGS.config,
                                 on_change=flags.FLAGS.on_config_change):
        train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except (training.ConfigMismatchError, training.WorkdirLockedError,
            training.CorruptCheckpointError, DataUnavailableError) as e:
      sys.exit(f"error: {e}")  # what to do is in the message: no traceback

  app.run(main)


class _PlainFormatter(logging_lib.Formatter):
  """INFO as the bare message; WARNING and above with their level name."""

  def format(self, record):
    message = record.getMessage()
    if record.exc_info:
      message += "\n" + self.formatException(record.exc_info)
    if record.levelno > logging_lib.INFO:
      return f"{record.levelname}: {message}"
    return message


def plain_log_lines() -> None:
  """absl log lines without the ``I1130 23:47:40.86 140189 file.py:122]``
  prefix (the binaries' progress lines and tables)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.get_absl_handler().python_handler.setFormatter(_PlainFormatter())


def _wants_help(argv) -> bool:
  return any(a.lstrip("-").split("=", 1)[0] in HELP_FLAGS
             for a in argv[1:] if a.startswith("-"))


def _load_module(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None:
    raise FileNotFoundError(f"--config: no such config file {path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _config_path(argv, default: str) -> str:
  """The value of ``--config`` in ``argv`` (the last one), else ``default``."""
  path = default
  for i, arg in enumerate(argv[1:], 1):
    flag, eq, value = arg.lstrip("-").partition("=")
    if arg.startswith("-") and flag == "config":
      path = value if eq else (argv[i + 1] if i + 1 < len(argv) else path)
  return path


def config_fields(config, prefix: str = ""):
  """``(dotted field, value)`` of every leaf of an ml_collections config."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      yield from config_fields(value, name + ".")
    else:
      yield name, value


def field_help(help_by_field, field: str) -> str | None:
  """The help of ``field`` or of its closest documented parent section."""
  parts = field.split(".")
  for n in range(len(parts), 0, -1):
    text = help_by_field.get(".".join(parts[:n]))
    if text is not None:
      return text
  return None


def define_config_field_flags(argv, default_config: str) -> list[str]:
  """Defines a help-only ``--config.<field>`` flag per field of the config.

  ml_collections defines a field's override flag only when the command line
  overrides it, so ``--help`` would list no field. These flags carry each
  field's default and its ``FIELD_HELP`` line; they are defined only when
  help was asked for (the program prints it and exits), and may be
  replaced (``allow_override``) by ml_collections' own flags. Returns the
  flag names.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  path, _, arg = _config_path(argv, default_config).partition(":")
  module = _load_module(path, "_sparsejax_help_config")
  config = module.get_config(arg) if arg else module.get_config()
  help_by_field = dict(_load_module(default_config,
                                    "_sparsejax_help_default").FIELD_HELP)
  help_by_field.update(getattr(module, "FIELD_HELP", {}))
  names = []
  for field, value in config_fields(config):
    name = f"config.{field}"
    if name in flags.FLAGS:
      continue
    text = field_help(help_by_field, field) or f"(see {path})"
    flags.DEFINE_string(name, str(value), text, allow_override=True)
    names.append(name)
  return names


def check_dataset(spec) -> None:
  """Fails fast if a ``dataset`` section's ``source`` cannot give its ``name``.

  Raises:
    ValueError: naming ``config.dataset.source`` (or ``.name``) and the
      accepted values.
  """
  from sparsejax import data  # pylint: disable=g-import-not-at-top
  source = spec.get("source")
  if source not in data.SOURCES:
    raise ValueError(f"config.dataset.source must be one of {data.SOURCES} "
                     f"(offline files, tensorflow-datasets, generated), got "
                     f"{source!r}")
  try:
    data.check_source(spec["name"], source)
  except ValueError as e:
    raise ValueError(f"config.dataset (name={spec['name']!r}, "
                     f"source={source!r}): {e}") from e


def load_dataset(spec):
  """``(train, test)`` of a config's ``dataset`` section.

  Keys: ``name``; ``source``, one of ``"files"`` (the offline copies,
  ``data_dir`` or ``$SPARSEJAX_DATA_DIR`` or ``../shared/data``), ``"tfds"``
  (tensorflow-datasets, downloads once) or ``"synthetic"`` (generated, of
  ``name``'s shape); optional ``data_dir`` and ``kwargs`` (of
  :func:`sparsejax.data.load_dataset`).

  Raises:
    ValueError: a bad ``source`` or ``name`` (:func:`check_dataset`).
    DataUnavailableError: the files are missing, or tensorflow-datasets is
      not installed; the message gives the flags that get the data.
  """
  # pylint: disable=g-import-not-at-top
  from absl import logging

  from sparsejax import data

  check_dataset(spec)
  source = spec["source"]
  try:
    train, test = data.load_dataset(spec["name"], spec.get("data_dir"),
                                    source=source, **spec.get("kwargs", {}))
  except FileNotFoundError as e:
    if source != "files":
      raise
    raise DataUnavailableError(
        f"{e}\n  - or, without these files: --config.dataset.source=tfds "
        "(downloads with tensorflow-datasets; needs internet and pip install "
        "'sparsejax[tfds]') or --config.dataset.source=synthetic (generated "
        "data of the same shape, offline).") from e
  except ImportError as e:
    if source != "tfds":
      raise
    raise DataUnavailableError(
        f"{e}\nOffline: --config.dataset.source=files (the offline copies) "
        "or --config.dataset.source=synthetic (generated data).") from e
  logging.info("data: %s from %s, %d train / %d test examples, %d classes",
               spec["name"], source, len(train.y), len(test.y),
               train.num_classes)
  return train, test


def create_model(spec, num_classes: int):
  """The Flax module of a config's ``model`` entry (``name``, ``kwargs``)."""
  from sparsejax import models  # pylint: disable=g-import-not-at-top
  return models.create_model(spec["name"], num_classes,
                             **spec.get("kwargs", {}))


def partition(dataset, spec, seed: int, log_name: str = ""):
  """The clients of a config's ``partition`` section, with a summary log line.

  Keys: ``scheme``, ``num_clients``, ``alpha``, ``classes_per_client`` (of
  :func:`sparsejax.federated.partition_dataset`).
  """
  # pylint: disable=g-import-not-at-top
  from absl import logging
  import numpy as np

  from sparsejax import federated

  clients = federated.partition_dataset(
      dataset, spec["scheme"], spec["num_clients"], seed=seed,
      alpha=spec["alpha"], classes_per_client=spec["classes_per_client"])
  summary = clients.summary()
  logging.info("%s seed %d: %d clients, sizes min/median/max %d/%d/%d, "
               "label TV distance to global %.3f", log_name or dataset.name,
               seed, clients.num_clients, summary["sizes"].min(),
               int(np.median(summary["sizes"])), summary["sizes"].max(),
               summary["mean_tv_distance"])
  return clients
