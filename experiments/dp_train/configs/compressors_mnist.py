r"""Every compressor family on one data-parallel problem: accuracy against bytes.

    bash experiments/dp_train/run_seeds.sh \
        experiments/dp_train/configs/compressors_mnist.py /tmp/compressors_mnist

(3 seeds, then ``experiments.compare_seeds``: the table over seeds and
accuracy against bytes with seed bands, in ``/tmp/compressors_mnist/report``).

The setting of :mod:`sahu_mnist` (MNIST, MLP 200-200, 8 forced host
devices, global batch 256, 1000 steps, SGD Nesterov 0.9, lr 0.05) with:

- ``dense``: no compression.
- ``ef_top_k``: global top-k 0.1% under error feedback.
- ``ef_powersgd_r{1,2,4}``: PowerSGD rank 1, 2, 4 under error feedback
  (Vogels et al.: they use EF; warm-up of 10 dense steps, the default).
- ``ef_onebit``: 1-bit SGD under error feedback (Seide et al. need it).
- ``terngrad`` and ``natural``: TernGrad and natural compression, unbiased,
  without error feedback (as in their papers).
- ``sign_mv``: signSGD with majority vote, no error feedback, SGD without
  momentum at lr 1e-3 (a sign step moves every coordinate by lr; Bernstein
  et al. tune lr per problem: 1e-3 is our choice, not tuned).
- ``dgc``: deep gradient compression at 0.1% (momentum correction and
  masking inside the compressor, so plain SGD after it at the same lr;
  sparsity warm-up over the first 100 steps).

Departures: an MLP on MNIST instead of the papers' CNNs/ResNets on CIFAR and
ImageNet; 1000 steps; no per-method tuning except signSGD's learning rate.
"""

from experiments.dp_train.configs import sahu_mnist

RATIO = 0.001


def methods() -> dict:
  plain_sgd = {"kwargs": {}}
  out = {
      "dense": {"name": "no_compression", "error_feedback": False},
      "ef_top_k": {"name": "top_k", "ratio": RATIO, "scope": "global"},
      "ef_onebit": {"name": "onebit"},
      "terngrad": {"name": "terngrad", "error_feedback": False},
      "natural": {"name": "natural_compression", "error_feedback": False},
      "sign_mv": {"name": "sign_majority_vote", "error_feedback": False,
                  "optimizer": {"learning_rate": 1e-3, **plain_sgd}},
      "dgc": {"name": "dgc", "ratio": RATIO, "error_feedback": False,
              "warmup_steps": 100, "optimizer": plain_sgd},
  }
  for rank in (1, 2, 4):
    out[f"ef_powersgd_r{rank}"] = {"name": "powersgd", "rank": rank}
  return out


def get_config():
  config = sahu_mnist.get_config(f"{RATIO}")
  config.methods = methods()
  del config.ratio, config.calibration_start, config.calibration_rtol
  return config
