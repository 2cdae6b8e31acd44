"""SA-PEF on FEMNIST at CPU scale: the paper's comparison, small model.

100 natural writers of the offline subset (a seeded choice of its 300), 10
per round, H = 5 local steps of batch 32, global top-1% uplink, 150 rounds,
a 784-200-62 MLP (169k params; the LEAF CNN's 6.6M x 100 residuals is too
heavy for a CPU), SGD momentum 0.9, lr warm-up over 5 rounds then cosine
0.05 -> 0.005, weight decay 1e-4. Methods: dense FedAvg, EF (alpha = 0),
SAEF (alpha = 1), SA-PEF (alpha = 0.85 and the theory's "auto" with L = 1),
and CSER-style EF with a periodic residual reset (every 5 rounds the sampled
clients also send the global top-10% of their residual).
Run several seeds (``--config.seed``) into separate workdirs and compare
them with ``experiments.compare_seeds``.
"""

from experiments.federated.configs import default


def get_config():
  config = default.base_config()
  config.dataset.name = "femnist"
  config.partition.update(scheme="groups", num_clients=100)
  config.model.kwargs = {"features": (200,)}
  config.local.update(lr=0.05, lr_min=0.005, warmup_rounds=5, momentum=0.9,
                      weight_decay=1e-4, steps=5, batch_size=32)
  top_k = {"name": "top_k", "ratio": 0.01, "scope": "global"}
  config.methods = dict(
      default.methods(0.01),
      sapef_auto={"algorithm": "sapef", "alpha": "auto", "compressor": top_k},
      cser={"algorithm": "ef_fedavg", "compressor": top_k, "reset_every": 5,
            "reset_compressor": {"name": "top_k", "ratio": 0.1,
                                 "scope": "global"}})
  config.num_rounds = 150
  config.clients_per_round = 10
  config.eval_every = 5
  config.probe_size = 0
  config.log_every = 25
  config.checkpoint_every = 50
  config.target_accuracy = 0.6
  return config
