"""KTA v2 (prediction-space market) vs. local-only, FedMD, FedAvg, FedProx.

``train_and_evaluate(config, workdir)``, per seed: draws the public reference
set from the training split, partitions the rest into clients (each holding
out ``holdout_fraction`` as its personalised test set), then runs every
method on that same partition. The market methods use
:class:`sparsejax.federated.market.Market`; FedAvg/FedProx use
:class:`sparsejax.federated.Simulation` (dense fp32 both ways). Evaluation
every ``eval_every`` rounds: ``personal_accuracy`` = mean over clients of its
model (the global model for FedAvg/FedProx) on its held-out part;
``global_accuracy`` = mean over clients on the global test set.

Writes ``workdir/<method>/seed<s>/metrics.{jsonl,csv}``, plots of personal
accuracy against rounds and total bytes (seed ``seeds[0]``), and
``summary.md``/``summary.json``: final and best accuracies (mean over seeds),
total bytes and the fraction of FedAvg's.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import ml_collections
import numpy as np

from sparsejax import data
from sparsejax import federated
from sparsejax import models
from sparsejax import training
from sparsejax.federated import market as market_lib

MARKET_KINDS = ("kta", "fedmd", "local")
BASELINE_KINDS = ("fedavg", "fedprox")


def load_data(config, seed: int):
  """``(train clients, held-out parts, reference, test)`` for one seed."""
  ds = config.dataset
  train, test = data.load_dataset(ds.name, ds.get("data_dir"),
                                  **ds.get("kwargs", {}))
  if ds.get("train_size"):
    train, _ = market_lib.split_off(train, ds.train_size, seed=seed)
  if ds.get("test_size"):
    test, _ = market_lib.split_off(test, ds.test_size, seed=seed)
  reference, rest = market_lib.split_off(train, config.reference_size,
                                         seed=seed)
  p = config.partition
  clients = federated.partition_dataset(
      rest, p.scheme, p.num_clients, seed=seed, alpha=p.alpha,
      classes_per_client=p.classes_per_client)
  train_parts, held = market_lib.holdout_split(
      clients, config.holdout_fraction, seed=seed)
  logging.info("%s seed %d: reference %d, %d clients (sizes %d..%d), test %d,"
               " label TV distance %.3f", ds.name, seed, len(reference.y),
               clients.num_clients, clients.sizes.min(), clients.sizes.max(),
               len(test.y), clients.summary()["mean_tv_distance"])
  return train_parts, held, reference, test


def client_groups(config, num_classes: int):
  """Client ``i`` gets architecture ``config.models[i % len(models)]``."""
  n, specs = config.partition.num_clients, config.models
  return [market_lib.ClientGroup(
      models.create_model(m["name"], num_classes, **m.get("kwargs", {})),
      tuple(range(g, n, len(specs)))) for g, m in enumerate(specs)]


def _optimizer(config):
  return training.optimizer_from_config(dict(config.optimizer))


def run_market(kind, method, config, seed, clients, held, reference, test):
  """Yields ``(round, metrics)`` of a market method (evaluated rounds too)."""
  overrides = {k: v for k, v in method.items() if k != "kind"}
  market = market_lib.Market(
      client_groups(config, test.num_classes), clients, reference,
      clients_per_round=config.clients_per_round,
      optimizer=_optimizer(config),
      config=market_lib.MarketConfig(
          **{**config.market.to_dict(), **overrides, "method": kind}),
      local_steps=config.local_steps, batch_size=config.batch_size,
      distill_steps=config.distill_steps,
      distill_batch_size=config.distill_batch_size, seed=seed)
  for rnd in range(1, config.num_rounds + 1):
    metrics = market.step()
    if rnd % config.eval_every == 0 or rnd == config.num_rounds:
      metrics["personal_accuracy"] = float(
          market.client_accuracy(parts=held).mean())
      metrics["global_accuracy"] = float(
          market.client_accuracy(test.x, test.y).mean())
    yield rnd, metrics


def run_baseline(kind, method, config, seed, clients, held, reference, test):
  """Yields ``(round, metrics)`` of FedAvg/FedProx on the Simulation engine."""
  del reference
  kwargs = {k: v for k, v in method.items() if k != "kind"}
  algo = market_lib.baseline_algorithm(
      kind, client_groups(config, test.num_classes), test.x[:1],
      _optimizer(config), local_steps=config.local_steps,
      batch_size=config.batch_size, **kwargs)
  sim = federated.Simulation(algo, clients, config.clients_per_round,
                             seed=seed, probe_size=0)
  n = clients.num_clients
  for rnd in range(1, config.num_rounds + 1):
    metrics, _ = sim.step(evaluate=False)
    metrics = {k: metrics[k] for k in ("round", "train_loss", "uplink_bits",
                                       "downlink_bits", "uplink_bytes",
                                       "downlink_bytes", "total_bytes")}
    if rnd % config.eval_every == 0 or rnd == config.num_rounds:
      every = jax.tree.map(lambda a: np.broadcast_to(a, (n,) + a.shape),
                           sim.params)
      one = jax.tree.map(lambda a: a[None], sim.params)
      metrics["personal_accuracy"] = float(market_lib.client_accuracy(
          algo.model, every, None, None, held).mean())
      metrics["global_accuracy"] = float(market_lib.client_accuracy(
          algo.model, one, test.x, test.y)[0])
    yield rnd, metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs every method for every seed; returns ``{method: [records/seed]}``."""
  runs = {name: [] for name in config.methods}
  for seed in config.seeds:
    clients, held, reference, test = load_data(config, seed)
    for name, method in config.methods.items():
      kind = method["kind"]
      if kind in MARKET_KINDS:
        run = run_market
      elif kind in BASELINE_KINDS:
        run = run_baseline
      else:
        raise ValueError(f"unknown method kind {kind!r}; known: "
                         f"{MARKET_KINDS + BASELINE_KINDS}")
      rundir = os.path.join(workdir, name, f"seed{seed}")
      writer = training.MetricsWriter(rundir)
      start = time.time()
      for rnd, metrics in run(kind, dict(method), config, seed, clients, held,
                              reference, test):
        writer.write(metrics)
        if "personal_accuracy" in metrics:
          logging.info("[%s seed %d] round %d: personal %.4f global %.4f, "
                       "%s", name, seed, rnd, metrics["personal_accuracy"],
                       metrics["global_accuracy"],
                       training.format_bytes(metrics["total_bytes"]))
      logging.info("[%s seed %d] %.1f s", name, seed, time.time() - start)
      runs[name].append(training.read_metrics(rundir))
  write_summary(runs, workdir)
  return runs


def _mean_std(values):
  values = np.asarray(values, np.float64)
  return f"{values.mean():.4f}" + (f" ± {values.std():.4f}"
                                   if values.size > 1 else "")


def write_summary(runs, workdir):
  """Plots (first seed) and the final/best/bytes table (mean over seeds)."""
  evals = {k: [[r for r in seed if "personal_accuracy" in r] for seed in v]
           for k, v in runs.items()}
  first = {k: v[0] for k, v in evals.items()}
  for x, logx in (("round", False), ("total_bytes", True)):
    for y in ("personal_accuracy", "global_accuracy"):
      training.plot_curves(first, os.path.join(workdir, f"{y}_vs_{x}.png"),
                           x=x, y=y, logx=logx, title=f"{y} vs {x}")
  fedavg = next((np.mean([s[-1]["total_bytes"] for s in v])
                 for k, v in evals.items() if k == "fedavg"), None)
  rows, summary = [], {}
  for name, seeds in evals.items():
    total = float(np.mean([s[-1]["total_bytes"] for s in seeds]))
    entry = {
        "final_personal": [s[-1]["personal_accuracy"] for s in seeds],
        "best_personal": [max(r["personal_accuracy"] for r in s)
                          for s in seeds],
        "final_global": [s[-1]["global_accuracy"] for s in seeds],
        "total_bytes": total,
        "fraction_of_fedavg": (total / fedavg if fedavg else None),
    }
    summary[name] = entry
    ratio = ("-" if not fedavg else "0" if total == 0
             else f"1/{fedavg / total:.0f}" if total < fedavg
             else f"{total / fedavg:.2f}x")
    rows.append((name, _mean_std(entry["final_personal"]),
                 _mean_std(entry["best_personal"]),
                 _mean_std(entry["final_global"]), total, ratio))
  table = training.format_table(rows, (
      "method", "final personal acc", "best personal acc",
      "final global acc", "total bytes", "bytes vs FedAvg"))
  training.save_summary(workdir, table, summary)
  logging.info("summary (%s):\n%s", workdir, table)
  return table


__all__ = ["client_groups", "load_data", "run_baseline", "run_market",
           "train_and_evaluate", "write_summary"]
