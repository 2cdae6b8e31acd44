"""KTA v2 (prediction-space market) vs. local-only, FedMD, FedAvg, FedProx.

``train_and_evaluate(config, workdir)``, per seed: draws the public reference
set from the training split, partitions the rest into clients (each holding
out ``holdout_fraction`` as its personalised test set), then runs every
method on that same partition. The market methods use
:class:`sparsejax.federated.Market`; FedAvg/FedProx use
:class:`sparsejax.federated.Simulation` (dense fp32 both ways). Evaluation
every ``eval_every`` rounds: ``personal_accuracy`` = mean over clients of its
model (the global model for FedAvg/FedProx) on its held-out part;
``global_accuracy`` = mean over clients on the global test set.

Writes ``workdir/<method>/seed<s>/metrics.{jsonl,csv}`` and checkpoints
(rerunning with the same ``workdir`` resumes each run exactly), plots of
personal and global accuracy against rounds and total bytes (seed
``seeds[0]``), and ``summary.md``/``summary.json``: final and best accuracies
(mean over seeds), total bytes and the fraction of FedAvg's.
"""

from __future__ import annotations

import os

from absl import logging
import jax
import ml_collections
import numpy as np

from experiments import launch
from sparsejax import federated
from sparsejax import training
from sparsejax.federated import knowledge
from sparsejax.federated import market as market_lib

BASELINE_KINDS = ("fedavg", "fedprox")
#: The keys of a FedAvg/FedProx round kept in its records.
BASELINE_KEYS = ("round", "train_loss", "uplink_bits", "downlink_bits",
                 "uplink_bytes", "downlink_bytes", "total_bytes")
#: The summary's figures and columns (:func:`sparsejax.training.write_summary`).
PLOTS = tuple(training.Plot(f"{y}_vs_{x}.png", x, y, logx=x != "round",
                            title=f"{y} vs {x}")
              for x in ("round", "total_bytes")
              for y in ("personal_accuracy", "global_accuracy"))
COLUMNS = (training.Column("final personal acc", "personal_accuracy"),
           training.Column("best personal acc", "personal_accuracy", "max"),
           training.Column("final global acc", "global_accuracy"),
           training.Column("total bytes", "total_bytes"))


def load_data(config, seed: int):
  """``(train clients, held-out parts, reference, test)`` for one seed."""
  ds = config.dataset
  train, test = launch.load_dataset(ds)
  if ds.get("train_size"):
    train, _ = federated.split_off(train, ds.train_size, seed=seed)
  if ds.get("test_size"):
    test, _ = federated.split_off(test, ds.test_size, seed=seed)
  reference, rest = federated.split_off(train, config.reference_size,
                                        seed=seed)
  clients = launch.partition(rest, config.partition, seed)
  train_parts, held = federated.holdout_split(
      clients, config.holdout_fraction, seed=seed)
  logging.info("%s seed %d: reference %d, test %d examples", ds.name, seed,
               len(reference.y), len(test.y))
  return train_parts, held, reference, test


def client_groups(config, num_classes: int):
  """Client ``i`` gets architecture ``config.models[i % len(models)]``."""
  n, specs = config.partition.num_clients, config.models
  return [federated.ArchitectureGroup(launch.create_model(m, num_classes),
                                      tuple(range(g, n, len(specs))))
          for g, m in enumerate(specs)]


def baseline_algorithm(kind: str, groups, example_x, local_opt, **kwargs):
  """FedAvg or FedProx (``kind``) on the one architecture of ``groups``.

  Raises:
    ValueError: clients use different architectures: parameter averaging
      needs one shared model (only the market exchanges predictions).
  """
  modules = {g.module for g in groups}
  if len(modules) != 1:
    raise ValueError(
        f"{kind} averages parameters, so all clients need one architecture; "
        f"got {len(modules)}: {sorted(type(m).__name__ for m in modules)}. "
        "Heterogeneous clients can only use the prediction-space market.")
  return federated.ALGORITHMS[kind](
      federated.classifier(modules.pop(), example_x), local_opt, **kwargs)


def _optimizer(config):
  return training.optimizer_from_config(dict(config.optimizer))


def market_method(kind, method, config, seed, clients, held, reference, test):
  """``(engine, step, evaluate)`` of a market method (its ``kind``)."""
  overrides = {k: v for k, v in method.items() if k != "kind"}
  market = federated.Market(
      client_groups(config, test.num_classes), clients, reference,
      clients_per_round=config.clients_per_round,
      optimizer=_optimizer(config),
      config=federated.MarketConfig(
          **{**config.market.to_dict(), **overrides, "method": kind}),
      local_steps=config.local_steps, batch_size=config.batch_size,
      distill_steps=config.distill_steps,
      distill_batch_size=config.distill_batch_size, seed=seed)

  def evaluate():
    return {"personal_accuracy": float(
        market.client_accuracy(parts=held).mean()),
            "global_accuracy": float(market.client_accuracy(test).mean())}

  return market, market.step, evaluate


def baseline_method(kind, method, config, seed, clients, held, reference,
                    test):
  """``(engine, step, evaluate)`` of FedAvg/FedProx on the Simulation engine."""
  del reference
  kwargs = {k: v for k, v in method.items() if k != "kind"}
  algo = baseline_algorithm(
      kind, client_groups(config, test.num_classes), test.x[:1],
      _optimizer(config), local_steps=config.local_steps,
      batch_size=config.batch_size, **kwargs)
  sim = federated.Simulation(algo, clients, config.clients_per_round,
                             seed=seed, test_data=test, probe_size=0)

  def step():
    metrics, _ = sim.step(evaluate=False)
    return {k: metrics[k] for k in BASELINE_KEYS}

  def evaluate():
    every = jax.tree.map(
        lambda a: np.broadcast_to(a, (clients.num_clients,) + a.shape),
        sim.params)
    return {"personal_accuracy": float(market_lib.client_accuracy(
        algo.model, every, parts=held).mean()),
            "global_accuracy": sim.evaluate()["accuracy"]}

  return sim, step, evaluate


def run_method(engine, step, evaluate, config, rundir):
  """Runs (or resumes) one method's engine; returns its records."""
  def step_fn(state, i):
    del state  # the engine holds its state
    metrics = step()
    if (i + 1) % config.eval_every == 0 or i + 1 == config.num_rounds:
      metrics.update(evaluate())
    return engine.state, metrics

  with training.Checkpointer(os.path.join(rundir, "checkpoints")) as ckpt:
    return training.run_logged(
        rundir, ckpt, engine.state, step_fn, config.num_rounds,
        checkpoint_every=config.checkpoint_every, log_every=config.eval_every,
        unit="round", on_restore=lambda _, state: engine.restore(state),
        progress_keys=("personal_accuracy", "global_accuracy", "total_bytes"))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs every method for every seed; returns ``{method: [records/seed]}``."""
  for name, method in config.methods.items():
    if method["kind"] not in knowledge.METHODS + BASELINE_KINDS:
      raise ValueError(f"config.methods.{name}: unknown kind "
                       f"{method['kind']!r}; known: "
                       f"{knowledge.METHODS + BASELINE_KINDS}")
  runs = {name: [] for name in config.methods}
  for seed in config.seeds:
    clients, held, reference, test = load_data(config, seed)
    for name, method in config.methods.items():
      kind = method["kind"]
      build = baseline_method if kind in BASELINE_KINDS else market_method
      engine, step, evaluate = build(kind, dict(method), config, seed,
                                     clients, held, reference, test)
      rundir = os.path.join(workdir, name, f"seed{seed}")
      runs[name].append(run_method(engine, step, evaluate, config, rundir))
  training.write_summary(workdir, runs, COLUMNS, plots=PLOTS,
                         y="personal_accuracy", baseline="fedavg",
                         bytes_key="total_bytes")
  return runs


__all__ = ["baseline_algorithm", "client_groups", "load_data",
           "train_and_evaluate"]
