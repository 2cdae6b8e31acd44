r"""Sahu et al. at paper scale: ResNet-18 on CIFAR-10, 8 workers (accelerators).

    python -m experiments.dp_train.main \
        --config=experiments/dp_train/configs/sahu_cifar10_resnet18.py:0.001 \
        --config.seed=0 --workdir=/tmp/sahu_r18/ratio=0.001/0

The methods of :mod:`experiments.dp_train.configs.sahu_mnist` (dense, global
top-k, the calibrated constant threshold, the budgeted threshold started
from it), same argument syntax (``<ratio>[,no_dense]``); ``run_sahu.sh``
runs it with ``CONFIG=`` set to this file.

Sahu et al.'s setting: ResNet-18 on CIFAR-10, 8 workers, SGD with momentum,
batch 256 in all, ~200 epochs, learning rate 0.1 with step decay; ratios
down to 0.1%. Departures:
- GroupNorm instead of BatchNorm (no batch statistics to keep in sync; the
  compressed quantity is the gradient in both).
- 30 epochs (5,880 steps) with a cosine schedule instead of 200 epochs with
  step decay: the claim is about equal total volume, compared at equal
  steps; the calibration pilots are full runs, so each ratio costs ~6 runs.
- It needs 8 devices (one host with 8 GPUs or a TPU v3-8/v4-8); with fewer,
  ``--config.num_devices`` sets the worker count (a departure: the error
  feedback of fewer workers averages fewer residuals).
"""

import ml_collections

from experiments.dp_train.configs import sahu_mnist


def get_config(arg: str = "0.001"):
  config = sahu_mnist.get_config(arg)
  config.dataset.name = "cifar10"   # source, kwargs as in sahu_mnist
  config.model = ml_collections.ConfigDict(
      {"name": "resnet18", "kwargs": {"norm": "group"}})
  config.optimizer = ml_collections.ConfigDict(
      {"name": "sgd", "learning_rate": 0.1, "schedule": "cosine",
       "kwargs": {"momentum": 0.9, "nesterov": True}})
  config.batch_size = 256
  config.num_steps = 5880
  config.log_every = 98
  config.eval_every = 980
  config.checkpoint_every = 980
  config.target_accuracy = 0.9
  return config
