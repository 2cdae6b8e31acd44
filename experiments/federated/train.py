"""Federated training with compressed uplinks: one simulation per method.

``train_and_evaluate(config, workdir)`` partitions ``config.dataset`` into
clients, then for each entry of ``config.methods`` (an algorithm, optionally a
compressor and ``alpha``/``mu``) runs a :class:`sparsejax.federated.Simulation`
and writes under ``workdir/<method>/``: ``metrics.jsonl``/``.csv`` (one record
per round: train loss, residual norm, gradient mismatch, exact uplink and
downlink bits, cumulative bytes, test accuracy every ``eval_every`` rounds)
and orbax checkpoints of the whole simulation state (global model, every
client's residual, ledger, PRNG key). Rerunning with the same ``workdir``
resumes each method exactly. ``workdir`` then gets PNG plots of test
accuracy against rounds, uplink bytes and total bytes (and uplink energy for
compressors wrapped by ``energy_costs``), and ``summary.md``/
``summary.json`` with rounds-to-target and bytes-to-target.
"""

from __future__ import annotations

import os

from absl import logging
import ml_collections
import numpy as np
import optax

import sparsejax as sj
from sparsejax import data
from sparsejax import federated
from sparsejax import models
from sparsejax import training

ALGORITHMS = {"fedavg": federated.fedavg, "fedprox": federated.fedprox,
              "ef_fedavg": federated.ef_fedavg, "sapef": federated.sapef}


def local_optimizer(local: ml_collections.ConfigDict, num_rounds: int):
  """``round -> optax`` SGD whose lr follows warm-up + cosine over rounds."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=local.lr_min, peak_value=local.lr,
      warmup_steps=local.warmup_rounds, decay_steps=num_rounds,
      end_value=local.lr_min)
  return lambda rnd: optax.chain(
      optax.add_decayed_weights(local.weight_decay),
      optax.sgd(schedule(rnd), momentum=local.momentum or None))


def build_algorithm(method: ml_collections.ConfigDict, config, model):
  """The :class:`~sparsejax.federated.FederatedAlgorithm` of one method."""
  method = dict(method)
  name = method.pop("algorithm")
  if name not in ALGORITHMS:
    raise ValueError(f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}")
  compressor = method.pop("compressor", None)
  if compressor is not None:
    compressor = sj.compressor_from_config(compressor)
    if "energy_costs" in method:  # an energy ledger on any compressor
      compressor = sj.energy_metered(compressor, method.pop("energy_costs"))
    method["compressor"] = compressor
  if "reset_compressor" in method:  # of a periodic residual reset
    method["reset_compressor"] = sj.compressor_from_config(
        method["reset_compressor"])
  if method.get("alpha") == "auto":
    method.setdefault("local_lr", config.local.lr)
  return ALGORITHMS[name](
      model, local_optimizer(config.local, config.num_rounds),
      local_steps=config.local.steps, batch_size=config.local.batch_size,
      aggregation=method.pop("aggregation", config.aggregation),
      server_lr=config.server_lr, **method)


def run_method(name, algo, config, workdir, clients, test_ds):
  """Runs (or resumes) one method; returns its metric records."""
  workdir = os.path.join(workdir, name)
  mesh = (federated.client_mesh(config.num_devices)
          if config.num_devices > 1 else None)
  sim = federated.Simulation(
      algo, clients, config.clients_per_round, seed=config.seed,
      test_data=test_ds, eval_every=config.eval_every,
      probe_size=config.probe_size, mesh=mesh,
      client_batch_size=config.client_batch_size,
      dropout_rate=config.dropout_rate)
  checkpointer = training.Checkpointer(os.path.join(workdir, "checkpoints"))
  start = checkpointer.latest_step()
  if start is not None:
    sim.restore(checkpointer.restore(start, target=sim.state))
    logging.info("[%s] resumed after round %d", name, start)
  writer = training.MetricsWriter(workdir, resume_step=start)
  progress = training.Progress(config.num_rounds, every=config.log_every,
                               start=start or 0, unit="round")
  for rnd, metrics in sim.run(config.num_rounds):
    writer.write(metrics)
    progress.update(rnd, {k: v for k, v in metrics.items()
                          if k in ("train_loss", "test_accuracy",
                                   "uplink_bytes", "residual_norm")})
    if rnd % config.checkpoint_every == 0 or rnd == config.num_rounds:
      checkpointer.save(rnd, sim.state)
  checkpointer.close()
  return training.read_metrics(workdir)


def load_clients(config):
  """``(ClientData, test Dataset)`` from the dataset and partition config."""
  train_ds, test_ds = data.load_dataset(
      config.dataset.name, config.dataset.get("data_dir"),
      **config.dataset.get("kwargs", {}))
  p = config.partition
  clients = federated.partition_dataset(
      train_ds, p.scheme, p.num_clients, seed=config.seed, alpha=p.alpha,
      classes_per_client=p.classes_per_client)
  summary = clients.summary()
  logging.info("%s: %d clients, sizes min/median/max %d/%d/%d, "
               "label TV distance to global %.3f", config.dataset.name,
               clients.num_clients, summary["sizes"].min(),
               int(np.median(summary["sizes"])), summary["sizes"].max(),
               summary["mean_tv_distance"])
  return clients, test_ds


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs every method of ``config.methods``; returns ``{method: records}``."""
  clients, test_ds = load_clients(config)
  module = models.create_model(config.model.name, test_ds.num_classes,
                               **config.model.get("kwargs", {}))
  model = federated.classifier(module, test_ds.x[:1])
  runs = {}
  for name, method in config.methods.items():
    algo = build_algorithm(method, config, model)
    logging.info("[%s] %s", name, method.to_dict())
    runs[name] = run_method(name, algo, config, workdir, clients, test_ds)
  write_summary(runs, workdir, config.get("target_accuracy"))
  return runs


def write_summary(runs, workdir, target=None):
  """Accuracy plots against rounds and bytes, and the to-target tables."""
  evals = {k: [r for r in v if "test_accuracy" in r] for k, v in runs.items()}
  for x, logx, title in (("round", False, "rounds"),
                         ("uplink_bytes", True, "uplink bytes (all clients)"),
                         ("total_bytes", True, "uplink + downlink bytes")):
    training.plot_curves(evals, os.path.join(workdir, f"accuracy_vs_{x}.png"),
                         x=x, y="test_accuracy", logx=logx, target=target,
                         title=f"test accuracy vs {title}")
  rows = [(k, v[-1]["test_accuracy"], max(r["test_accuracy"] for r in v),
           v[-1]["uplink_bytes"], v[-1]["downlink_bytes"],
           v[-1].get("energy_joules")) for k, v in evals.items()]
  headers = ("method", "final test acc", "best test acc", "uplink bytes",
             "downlink bytes", "uplink energy J")
  metered = {k: v for k, v in evals.items() if "energy_joules" in v[-1]}
  if metered:
    training.plot_curves(metered, os.path.join(workdir,
                                               "accuracy_vs_energy.png"),
                         x="energy_joules", y="test_accuracy", target=target,
                         title="test accuracy vs uplink energy (J)")
  table = training.format_table(rows, headers)
  summary = {"final": [dict(zip(headers, r)) for r in rows]}
  if target is not None:
    x_keys = ("round", "uplink_bytes", "total_bytes")
    hits = training.bytes_to_target_table(evals, target, x_keys=x_keys)
    table += "\n" + training.format_table(
        hits, ("method", f"rounds to {target}", f"uplink bytes to {target}",
               f"total bytes to {target}"))
    summary["to_target"] = {"target": target, "rows": [
        dict(zip(("method",) + x_keys, h)) for h in hits]}
  training.save_summary(workdir, table, summary)
  logging.info("summary (%s):\n%s", workdir, table)
  return table


__all__ = ["build_algorithm", "load_clients", "local_optimizer", "run_method",
           "train_and_evaluate", "write_summary"]
