r"""Sahu et al. on CIFAR-10 at CPU scale: a small CNN, 8 forced devices.

    RATIOS="0.001" CONFIG=experiments/dp_train/configs/sahu_cifar10_cpu.py \
        bash experiments/dp_train/run_sahu.sh /tmp/sahu_cifar

The methods of :mod:`experiments.dp_train.configs.sahu_mnist`, same argument
syntax (``<ratio>[,no_dense]``). Departures from Sahu et al. (ResNet-18,
~200 epochs), measured on the shared 2-core CPU (2026-12-01):

- A narrow LEAF-style CNN, its convolutions as patch matmuls: conv 8, conv
  16, dense 64 (70,074 parameters). The conv32/64/128 version (579k) ran at
  0.85 steps/s, ~27 h for the equal-volume test; this one at 4.4-7 steps/s
  (compressed methods the slower).
- 1,000 steps of global batch 256 (5.1 epochs), SGD with Nesterov momentum
  0.9 and learning rate 0.05 (dense reached 49% test accuracy at step 200
  of a probe, so the MNIST rate is kept).
- One ratio, 0.1% (70 elements per worker and step), in the command above:
  the test is ~20 runs of 1,000 steps per ratio with the calibration pilots.
- Checkpoints every 100 steps: XLA:CPU's all-reduce deadlock (see
  ``retry.sh``) hit twice in the first 400 steps of the probe, and a retried
  run resumes from its last checkpoint.

Full scale: ``sahu_cifar10_resnet18.py``.
"""

import ml_collections

from experiments.dp_train.configs import sahu_mnist


def get_config(arg: str = "0.001"):
  config = sahu_mnist.get_config(arg)
  config.dataset.name = "cifar10"   # source, kwargs as in sahu_mnist
  config.model = ml_collections.ConfigDict(
      {"name": "leaf_cnn", "kwargs": {"features": (8, 16), "hidden": 64,
                                      "patch_conv": True}})
  config.num_steps = 1000
  config.log_every = 50
  config.eval_every = 100
  config.checkpoint_every = 100
  config.target_accuracy = 0.5
  return config
