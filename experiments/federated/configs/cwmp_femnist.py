"""CWMP vs top-k at 1, 5, 10 and 20%: FEMNIST, Dirichlet(0.5), 10 clients.

Both families use the energy-table cost model
(:func:`sparsejax.energy_table_costs`: 20 pJ/bit transmit plus a DRAM or SRAM
read-modify-write per element); CWMP's per-round budget is the ratio times
the energy of sending everything, and top-k is metered on the same costs.
CWMP's message buffer holds ``2 r`` of the entries (a cheap entry costs
less than the average, so a selection can exceed ``r d``; anything beyond the
buffer is counted as overflow). No error feedback (as in the paper). All clients take part every round.
The LEAF CNN mixes cheap, compute-bound convolution kernels (SRAM updates)
with one large memory-bound dense layer (DRAM updates), which is where
cost-weighting can differ from top-k; its dense layer is narrowed to 128 so
the sweep fits the 2-core build machine (a ResNet on CIFAR-10 took over 30 s
a round there).
"""

from experiments.federated.configs import default

RATIOS = (0.01, 0.05, 0.1, 0.2)


def methods():
  out = {"fedavg": {"algorithm": "fedavg"}}
  for r in RATIOS:
    pct = f"{100 * r:g}pct"
    out[f"top_k_{pct}"] = {
        "algorithm": "fedavg", "energy_costs": "energy_table",
        "compressor": {"name": "top_k", "ratio": r, "scope": "global"}}
    out[f"cwmp_{pct}"] = {  # keeps its own energy ledger
        "algorithm": "fedavg",
        "compressor": {"name": "cost_weighted", "costs": "energy_table",
                       "energy_ratio": r, "max_ratio": min(1.0, 2 * r)}}
  return out


def get_config():
  config = default.base_config()
  config.dataset.name = "femnist"
  config.partition.update(scheme="dirichlet", num_clients=10, alpha=0.5)
  config.model.name = "leaf_cnn"
  config.model.kwargs = {"hidden": 128}  # 458k parameters, 11% in convs
  config.local.update(lr=0.05, lr_min=0.005, steps=5, batch_size=16)
  config.methods = methods()
  config.num_rounds = 15
  config.clients_per_round = 10
  config.eval_every = 5
  config.log_every = 5
  config.checkpoint_every = 5
  config.client_batch_size = 1  # clients one at a time: no grouped convs
  config.target_accuracy = 0.5
  return config
