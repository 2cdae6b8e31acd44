"""SA-PEF on FEMNIST, as in the authors' ``configs/femnist/natural_top001``.

LEAF CNN, natural per-writer clients (200 of the offline subset's 300
writers), 20 per round, 200 rounds, batch 32, momentum 0.9, weight decay
1e-4, lr warm-up over 5 rounds then cosine 0.01 -> 0.001, global top-1%
uplink, alpha = 0.85 (SA-PEF) against FedAvg, EF and SAEF. The authors run 5
local epochs; this engine counts steps, and 20 steps of 32 is about 5 epochs
of the median writer (~140 examples). Memory: residuals for 200 clients of
the 6.6M-parameter CNN are 5.3 GB (accelerator or host RAM).
"""

from experiments.federated.configs import default


def get_config():
  config = default.get_config()
  config.seed = 42
  config.dataset.name = "femnist"
  config.partition.update(scheme="groups", num_clients=200)
  config.model = default.ml_collections.ConfigDict(
      {"name": "leaf_cnn", "kwargs": {}})
  config.local.update(lr=0.01, lr_min=0.001, warmup_rounds=5, momentum=0.9,
                      weight_decay=1e-4, steps=20, batch_size=32)
  config.methods = default.methods(0.01)
  config.num_rounds = 200
  config.clients_per_round = 20
  config.client_batch_size = 10
  config.eval_every = 5
  config.log_every = 5
  config.checkpoint_every = 20
  config.target_accuracy = 0.75
  return config
