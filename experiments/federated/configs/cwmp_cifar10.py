"""CWMP vs top-k at 1, 5, 10 and 20%: CIFAR-10, Dirichlet(0.5), 10 clients.

Both families use the energy-table cost model
(:func:`sparsejax.energy_table_costs`: 20 pJ/bit transmit plus a DRAM or SRAM
read-modify-write per element); CWMP's per-round budget is the ratio times
the energy of sending everything, and top-k is metered on the same costs.
No error feedback (as in the paper). All clients take part every round.
CIFAR-10 is the offline JPEG copy (see ../shared/data/README.md).
"""

from experiments.federated.configs import default

RATIOS = (0.01, 0.05, 0.1, 0.2)


def methods():
  out = {"fedavg": {"algorithm": "fedavg"}}
  for r in RATIOS:
    out[f"top_k_{r:g}"] = {
        "algorithm": "fedavg", "energy_costs": "energy_table",
        "compressor": {"name": "top_k", "ratio": r, "scope": "global"}}
    out[f"cwmp_{r:g}"] = {
        "algorithm": "fedavg", "energy_costs": "energy_table",
        "compressor": {"name": "cost_weighted", "costs": "energy_table",
                       "energy_ratio": r}}
  return out


def get_config():
  config = default.get_config()
  config.dataset.name = "cifar10"
  config.partition.update(scheme="dirichlet", num_clients=10, alpha=0.5)
  config.model.name = "resnet9"
  config.model.kwargs = {"width": 8, "norm": "group"}
  config.local.update(lr=0.05, lr_min=0.005, steps=5, batch_size=32)
  config.methods = methods()
  config.num_rounds = 40
  config.clients_per_round = 10
  config.eval_every = 10
  config.log_every = 10
  config.checkpoint_every = 20
  config.target_accuracy = 0.35
  return config
