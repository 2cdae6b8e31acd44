r"""Prediction-space knowledge market vs. baselines (flax-examples shape).

    python -m experiments.kta.main \
        --config=experiments/kta/configs/cifar10.py --workdir=/tmp/kta

Runs every ``config.methods`` entry for every seed of ``config.seeds`` on one
partition, then writes plots and the summary table (see ``train.py``).
"""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.kta import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/sparsejax_kta",
                    "Where metrics, plots and the summary go.")
config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs/default.py"),
    "Experiment configuration.", lock_config=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
