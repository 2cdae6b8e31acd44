r"""Sahu et al. on CIFAR-10 at CPU scale: a small CNN, 8 forced devices.

    RATIOS="0.001 0.0005" CONFIG=experiments/dp_train/configs/sahu_cifar10_cpu.py \
        bash experiments/dp_train/run_sahu.sh /tmp/sahu_cifar

The methods of :mod:`experiments.dp_train.configs.sahu_mnist`, same argument
syntax (``<ratio>[,no_dense]``). Departures from Sahu et al. (ResNet-18,
~200 epochs): the LEAF-style CNN with its convolutions as patch matmuls
(fast on CPU; 2 conv layers and a 128-unit dense layer), 2,000 steps of
global batch 256 (10 epochs), SGD with Nesterov momentum 0.9 and learning
rate 0.05. Full scale: ``sahu_cifar10_resnet18.py``.
"""

import ml_collections

from experiments.dp_train.configs import sahu_mnist


def get_config(arg: str = "0.001"):
  config = sahu_mnist.get_config(arg)
  config.dataset.name = "cifar10"   # source, kwargs as in sahu_mnist
  config.model = ml_collections.ConfigDict(
      {"name": "leaf_cnn", "kwargs": {"hidden": 128, "patch_conv": True}})
  config.num_steps = 2000
  config.log_every = 50
  config.eval_every = 200
  config.checkpoint_every = 500
  config.target_accuracy = 0.5
  return config
