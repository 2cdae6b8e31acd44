r"""Every compressor family on the FEMNIST federated setting (issue #18).

    for s in 0 1 2; do python -m experiments.federated.main \
      --config=experiments/federated/configs/compressors_femnist.py \
      --config.seed=$s --workdir=/tmp/compressors_femnist/seed$s; done
    python -m experiments.compare_seeds --experiment=federated \
      --workdirs=/tmp/compressors_femnist/seed0,... --out=...

The SA-PEF CPU setting (:mod:`sapef_femnist_authors_cpu`: 100 natural
writers, 10 per round, a 784-200-62 MLP, 20 local SGD steps of batch 32,
lr 0.01 -> 0.001 with warm-up, momentum 0.9 fresh each round, weight decay
1e-4, "mean" aggregation, 80 rounds, test accuracy every 5 rounds) with the
uplink compressed by:

- ``fedavg``: nothing (dense float32).
- ``ef_top_k``: global top-1% under error feedback (EF-FedAvg).
- ``ef21_top_k``: global top-1% under EF21 with the server's estimate
  (EF21-PP, :func:`sparsejax.federated.ef21_fedavg`).
- ``ef_powersgd_r{1,2,4}``: PowerSGD rank 1, 2, 4 of each matrix-shaped
  delta under error feedback, no dense warm-up (``start_iter=0``: a warm-up
  counts a client's rounds, not steps, and would send 10 dense rounds).
- ``ef_onebit``: 1-bit SGD (per-sign means) under error feedback.
- ``ef_sign``: scaled sign under error feedback (EF-signSGD, Karimireddy et
  al. 2019). signSGD with majority vote needs the data-parallel vote
  collective; the federated server averages messages, so the vote is not
  run here.
- ``terngrad``, ``natural``: TernGrad and natural compression, unbiased,
  without error feedback.
- ``dgc``: DGC at 1% on the model delta (momentum 0.9 across a client's
  rounds, its own accumulation; no warm-up).

Departures: the ratio is 1% (the SA-PEF papers' FL setting), not DGC's
0.1%; an MLP instead of the LEAF CNN (see :mod:`sapef_femnist_authors_cpu`);
no per-method tuning.
"""

from experiments.federated.configs import sapef_femnist_authors_cpu

TOP_1 = {"name": "top_k", "ratio": 0.01, "scope": "global"}


def methods() -> dict:
  out = {
      "fedavg": {"algorithm": "fedavg"},
      "ef_top_k": {"algorithm": "ef_fedavg", "compressor": dict(TOP_1)},
      "ef21_top_k": {"algorithm": "ef21_fedavg", "compressor": dict(TOP_1)},
      "ef_onebit": {"algorithm": "ef_fedavg", "compressor": {"name": "onebit"}},
      "ef_sign": {"algorithm": "ef_fedavg",
                  "compressor": {"name": "scaled_sign"}},
      "terngrad": {"algorithm": "fedavg", "compressor": {"name": "terngrad"}},
      "natural": {"algorithm": "fedavg",
                  "compressor": {"name": "natural_compression"}},
      "dgc": {"algorithm": "fedavg",
              "compressor": {"name": "dgc", "ratio": 0.01, "momentum": 0.9}},
  }
  for rank in (1, 2, 4):
    out[f"ef_powersgd_r{rank}"] = {
        "algorithm": "ef_fedavg",
        "compressor": {"name": "powersgd", "rank": rank, "start_iter": 0}}
  return out


def get_config():
  config = sapef_femnist_authors_cpu.get_config()
  config.aggregation = "mean"
  config.methods = methods()
  config.probe_size = 0
  config.target_accuracy = 0.6
  return config
