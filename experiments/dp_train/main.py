r"""Data-parallel training with compressed gradients (flax-examples shape).

    python -m experiments.dp_train.main \
        --config=experiments/dp_train/configs/default.py --workdir=/tmp/dp

On CPU the data-parallel devices are forced host devices
(``--xla_force_host_platform_device_count``; no effect on GPU/TPU devices).
"""

from experiments import cpu_devices

cpu_devices.force(8)

# pylint: disable=g-import-not-at-top,wrong-import-position
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.dp_train import train
from sparsejax import training

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/sparsejax_dp_train",
                    "Where metrics, checkpoints and plots go; rerun to resume.")
config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs/default.py"),
    "Training configuration.", lock_config=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  training.quiet_checkpoint_logs()
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
