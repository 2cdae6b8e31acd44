r"""Federated training with compressed uplinks (flax-examples shape).

    python -m experiments.federated.main \
        --config=experiments/federated/configs/default.py --workdir=/tmp/fed

Every entry of ``config.methods`` is trained and compared; rerunning with the
same ``--workdir`` resumes each method exactly (residuals included). On CPU,
``config.num_devices`` > 1 uses forced host devices.
"""

from experiments import launch

launch.force_host_devices(8)

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments.federated import train

if __name__ == "__main__":
  launch.run(train.train_and_evaluate, __file__, "/tmp/sparsejax_federated")
