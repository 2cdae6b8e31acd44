"""SA-PEF on CIFAR-10 at the paper's scale: ``p10_dir05`` (for an accelerator).

The authors' ``configs/cifar10/p10_dir05_top001`` (:mod:`sapef_common`):
ResNet-9, 100 clients, Dirichlet 0.5, 10 per round, 200 rounds, H = 5
local steps of batch 64, lr 0.1 -> 0.003 (warm-up ``lr * r / 5`` over rounds
1..5, then cosine), weight decay 5e-4, fresh SGD momentum 0.9, "support"
aggregation, ``lr_g = 1``, global top-1%, alpha 0.85, CSER reset every 5
rounds, seeds 42..46 in their runs.

Departures:
- GroupNorm (32 groups) in ResNet-9 instead of BatchNorm: the engine keeps no
  per-client BatchNorm statistics (the authors send them uncompressed).
- The offline CIFAR-10 copy is JPEG (quality 75); the authors' 10% client
  validation split is not held out (the gradient mismatch uses the first 64
  test images).
- Test accuracy every 5 rounds.
Not run on the build machine (no accelerator was lent).
"""

from experiments.federated.configs import default
from experiments.federated.configs import sapef_common


def get_config(arg: str | None = None, clients_per_round: int = 10,
               dirichlet: float = 0.5):
  config = default.base_config()
  config.seed = 42
  config.dataset.name = "cifar10"
  config.partition.update(scheme="dirichlet", num_clients=100,
                          alpha=dirichlet)
  config.model = default.ml_collections.ConfigDict(
      {"name": "resnet9", "kwargs": {"norm": "group"}})
  config.local.update(lr=0.1, lr_min=0.003, warmup_rounds=5,
                      weight_decay=5e-4, steps=5, batch_size=64)
  sapef_common.apply(config, arg)
  config.num_rounds = 200
  config.clients_per_round = clients_per_round
  config.client_batch_size = 10
  config.eval_every = 5
  config.probe_size = 64
  config.log_every = 10
  config.checkpoint_every = 20
  config.target_accuracy = 0.7
  return config
