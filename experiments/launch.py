"""What every experiment binary shares: forced CPU devices and the absl main.

A binary's ``main.py`` is::

    from experiments import launch
    launch.force_host_devices(8)   # before jax is imported
    from experiments.dp_train import train
    if __name__ == "__main__":
      launch.run(train.train_and_evaluate, __file__, "/tmp/sparsejax_dp")

``--workdir`` (metrics, checkpoints, plots; rerun to resume) and ``--config``
(an ml_collections config file, default ``configs/default.py`` beside the
binary) are the flags, as in the flax examples.
"""

import os

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

  def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    training.quiet_checkpoint_logs()
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)

  app.run(main)
