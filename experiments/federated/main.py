r"""Federated training with compressed uplinks (flax-examples shape).

    python -m experiments.federated.main \
        --config=experiments/federated/configs/default.py --workdir=/tmp/fed

Every entry of ``config.methods`` is trained and compared; rerunning with the
same ``--workdir`` resumes each method exactly (residuals included). On CPU,
``config.num_devices`` > 1 uses forced host devices.
"""

from experiments import cpu_devices

cpu_devices.force(8)

# pylint: disable=g-import-not-at-top,wrong-import-position
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.federated import train
from sparsejax import training

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/sparsejax_federated",
                    "Where metrics, checkpoints and plots go; rerun to resume.")
config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs/default.py"),
    "Experiment configuration.", lock_config=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  training.quiet_checkpoint_logs()
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
