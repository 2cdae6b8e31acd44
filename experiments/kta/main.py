r"""Prediction-space knowledge market vs. baselines (flax-examples shape).

    python -m experiments.kta.main \
        --config=experiments/kta/configs/cifar10.py --workdir=/tmp/kta

Runs every ``config.methods`` entry for every seed of ``config.seeds`` on one
partition, then writes plots and the summary table (see ``train.py``).
"""

from experiments import launch

launch.force_host_devices(8)

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.kta import train

if __name__ == "__main__":
  launch.run(train.train_and_evaluate, __file__, "/tmp/sparsejax_kta")
