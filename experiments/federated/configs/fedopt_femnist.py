"""Server optimizers, SCAFFOLD and a compressed downlink on FEMNIST writers.

Issue #20's comparison: all 300 writers of the offline LEAF subset as
clients, 30 per round (10%), a 784-200-62 MLP (169,462 params), 10 local
SGD steps of batch 32 (lr 0.01 -> 0.001: warm-up over 5 rounds then cosine,
momentum 0.9 fresh each round, weight decay 1e-4), 60 rounds, test accuracy
every 2 rounds on the subset's per-writer test split. Methods, each without
and with (``*_down``) a compressed downlink (global top-5% of the model
update with server-side error feedback, DoubleSqueeze; 10% of the dense
broadcast's bits at 64 bits per (value, index) pair):

- ``fedavg``: dense uplink, ``server_lr`` 1.
- ``fedadam``: FedAvg's uplink with FedAdam on the server (Reddi et al.,
  ICLR 2021: ``adam(eta_g, b1=0.9, b2=0.99, eps=1e-3)``) at ``eta_g`` =
  0.01, not tuned (the paper tunes ``eta_g`` per task on a grid).
- ``scaffold``: option II control variates, dense uplink of ``Delta y`` and
  ``Delta c`` (twice FedAvg's uplink; ``c`` always goes down dense).
- ``ef``: error feedback with global top-1% on the uplink.

Departures from the papers' settings: the MLP instead of their CNN, 60
rounds (not 1,500), untuned server lr. Run seeds into separate workdirs
(``--config.seed``) and compare with ``experiments.compare_seeds``.
"""

from experiments.federated.configs import default

TOP_1 = {"name": "top_k", "ratio": 0.01, "scope": "global"}
DOWN = {"name": "top_k", "ratio": 0.05, "scope": "global"}
FEDADAM = {"name": "adam", "learning_rate": 0.01, "b1": 0.9, "b2": 0.99,
           "eps": 1e-3}


def methods():
  """The four algorithms, each also with the compressed downlink."""
  base = {
      "fedavg": {"algorithm": "fedavg"},
      "fedadam": {"algorithm": "fedavg", "server_opt": dict(FEDADAM)},
      "scaffold": {"algorithm": "scaffold"},
      "ef": {"algorithm": "ef_fedavg", "compressor": dict(TOP_1)},
  }
  return dict(base, **{f"{name}_down": dict(method, downlink=dict(DOWN))
                       for name, method in base.items()})


def get_config():
  config = default.base_config()
  config.dataset.name = "femnist"
  config.partition.update(scheme="groups", num_clients=300)
  config.model.kwargs = {"features": (200,)}
  config.local.update(lr=0.01, lr_min=0.001, warmup_rounds=5, momentum=0.9,
                      weight_decay=1e-4, steps=10, batch_size=32)
  config.methods = methods()
  config.num_rounds = 60
  config.clients_per_round = 30
  config.eval_every = 2
  config.probe_size = 0
  config.log_every = 20
  config.checkpoint_every = 30
  config.target_accuracy = 0.6
  return config
