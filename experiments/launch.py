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
binary) are the flags, as in the flax examples. The work directory belongs to
one run (:func:`sparsejax.training.open_workdir`): a second run on it at the
same time is refused, and so is a rerun with another config unless
``--on_config_change=restart`` (the old run is moved to ``previous-<time>/``)
or ``accept`` (resume under the new config). ``--print_config`` prints the
resolved config and exits.
"""

import os
import sys

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


def run(train_and_evaluate, main_file: str, default_workdir: str) -> None:
  """Defines ``--workdir``/``--config`` and runs ``train_and_evaluate``."""
  # pylint: disable=g-import-not-at-top
  from absl import app
  from absl import flags
  from absl import logging
  from ml_collections import config_flags

  from sparsejax import training

  flags.DEFINE_string("workdir", default_workdir,
                      "Metrics, checkpoints and plots; rerun to resume.")
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(main_file), "configs/default.py"),
      "Experiment configuration.", lock_config=True)
  flags.DEFINE_enum(
      "on_config_change", "refuse", ["refuse", "restart", "accept"],
      "When --workdir holds a run with another config: refuse (print the "
      "differences and stop), restart (move the old run to previous-<time>/ "
      "and start fresh) or accept (resume under the new config).")
  flags.DEFINE_bool("print_config", False,
                    "Print the resolved config and exit.")

  def main(argv):
    del argv
    if flags.FLAGS.print_config:
      print(flags.FLAGS.config)
      return
    logging.set_verbosity(logging.INFO)
    training.quiet_checkpoint_logs()
    try:
      with training.open_workdir(flags.FLAGS.workdir, flags.FLAGS.config,
                                 on_change=flags.FLAGS.on_config_change):
        train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except (training.ConfigMismatchError, training.WorkdirLockedError,
            training.CorruptCheckpointError) as e:
      sys.exit(f"error: {e}")  # what to do is in the message: no traceback

  app.run(main)


def load_dataset(spec):
  """``(train, test)`` of a config's ``dataset`` section.

  Keys: ``name``, optional ``data_dir`` and ``kwargs`` (of
  :func:`sparsejax.data.load_dataset`).
  """
  from sparsejax import data  # pylint: disable=g-import-not-at-top
  return data.load_dataset(spec["name"], spec.get("data_dir"),
                           **spec.get("kwargs", {}))


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
