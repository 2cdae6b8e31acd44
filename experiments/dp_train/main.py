r"""Data-parallel training with compressed gradients (flax-examples shape).

    python -m experiments.dp_train.main \
        --config=experiments/dp_train/configs/default.py --workdir=/tmp/dp

On CPU the data-parallel devices are forced host devices.
"""

from experiments import launch

launch.force_host_devices(8)

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.dp_train import train

if __name__ == "__main__":
  launch.run(train.train_and_evaluate, __file__, "/tmp/sparsejax_dp_train")
