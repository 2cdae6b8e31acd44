"""KTA v2 (prediction-space market) vs. local-only, FedMD, FedAvg, FedProx.

``train_and_evaluate(config, workdir)``, per seed: draws the public reference
set from the training split, partitions the rest into clients, each holding
out ``holdout_fraction`` as its personalised test set and then
``validation_fraction`` of the rest as its validation split; every method
trains on the remaining data of the same partition. The market methods use
:class:`sparsejax.federated.Market`; FedAvg/FedProx use
:class:`sparsejax.federated.Simulation` (dense fp32 both ways).

A method's ``search`` (``{knob: candidates}``) is a grid chosen on the
validation split, never the test data: each candidate runs
``search_rounds`` rounds and the one with the best mean validation accuracy
over clients wins (``<method>/seed<s>/search.json`` keeps every score; a
rerun reads it back). E.g. the softmax rule's ``teacher_tau`` and ``top_m``,
FedProx's ``mu``.

Evaluation every ``eval_every`` rounds, the same for every method:
``personal_accuracy`` = mean over clients of its model (the global model for
FedAvg/FedProx) on its held-out part; ``global_accuracy`` = the same models
on the global test set; for FedAvg/FedProx also ``ft_personal_accuracy`` and
``ft_global_accuracy``: the global model fine-tuned by each client for as
many cross-entropy steps as a market client distils per round. Market rounds
also log ``fedmd_distance`` and ``weight_entropy`` (how personal the targets
are, :func:`sparsejax.federated.knowledge.market_targets`).

Distillation takes ``distill_steps`` steps, or (``None``) enough for
``distill_epochs`` passes over the reference set.

Writes ``workdir/<method>/seed<s>/metrics.{jsonl,csv}`` and checkpoints
(rerunning with the same ``workdir`` resumes each run exactly), plots of
personal and global accuracy against rounds and total bytes (seed
``seeds[0]``), and ``summary.md``/``summary.json``: final and best accuracies
(mean over seeds), total bytes and the fraction of FedAvg's. The multi-seed
report with seed bands is ``experiments/kta/report.py``.
"""

from __future__ import annotations

import itertools
import json
import math
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
           training.Column("fine-tuned personal acc", "ft_personal_accuracy"),
           training.Column("TV from FedMD", "fedmd_distance"),
           training.Column("total bytes", "total_bytes"))
#: Method keys besides the engine's options.
MARKET_OPTIONS = knowledge.MarketConfig._fields + ("private_weight",)


def load_data(config, seed: int):
  """``(train, validation, held-out, reference, test)`` for one seed.

  ``validation`` is ``None`` when ``config.validation_fraction`` is 0.
  """
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
  val = None
  if config.validation_fraction:
    train_parts, val = federated.holdout_split(
        train_parts, config.validation_fraction, seed=seed + 1)
  logging.info("%s seed %d: reference %d, test %d examples", ds.name, seed,
               len(reference.y), len(test.y))
  return train_parts, val, held, reference, test


def distill_steps(config) -> int:
  """``config.distill_steps``, or the steps of ``distill_epochs`` passes."""
  if config.distill_steps is not None:
    return config.distill_steps
  return math.ceil(config.distill_epochs * config.reference_size
                   / config.distill_batch_size)


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


def market_method(kind, options, config, seed, clients, reference, test):
  """``(engine, step, evaluate)`` of a market method (its ``kind``).

  ``evaluate(parts, with_test)``: the mean accuracy of each client's model
  on its part of ``parts`` and (``with_test``) on ``test``.
  """
  options = dict(options)
  private_weight = options.pop("private_weight", config.private_weight)
  market = federated.Market(
      client_groups(config, test.num_classes), clients, reference,
      clients_per_round=config.clients_per_round,
      optimizer=_optimizer(config),
      config=federated.MarketConfig(
          **{**config.market.to_dict(), **options, "method": kind}),
      local_steps=config.local_steps, batch_size=config.batch_size,
      distill_steps=distill_steps(config),
      distill_batch_size=config.distill_batch_size,
      private_weight=private_weight, seed=seed)

  def evaluate(parts, with_test=True):
    out = {"personal_accuracy": float(
        market.client_accuracy(parts=parts).mean())}
    if with_test:
      out["global_accuracy"] = float(market.client_accuracy(test).mean())
    return out

  return market, market.step, evaluate


def baseline_method(kind, options, config, seed, clients, reference, test):
  """``(engine, step, evaluate)`` of FedAvg/FedProx on the Simulation engine.

  ``evaluate`` as in :func:`market_method`, for the global model and (with
  the test) for its copies fine-tuned by each client (``ft_*``).
  """
  del reference
  groups = client_groups(config, test.num_classes)
  algo = baseline_algorithm(
      kind, groups, test.x[:1], _optimizer(config),
      local_steps=config.local_steps, batch_size=config.batch_size, **options)
  sim = federated.Simulation(algo, clients, config.clients_per_round,
                             seed=seed, test_data=test, probe_size=0)
  n = clients.num_clients

  def step():
    metrics, _ = sim.step(evaluate=False)
    return {k: metrics[k] for k in BASELINE_KEYS}

  def scores(params, parts, prefix=""):
    own = market_lib.client_accuracy(algo.model, params, parts=parts).mean()
    glob = market_lib.client_accuracy(algo.model, params, test).mean()
    return {f"{prefix}personal_accuracy": float(own),
            f"{prefix}global_accuracy": float(glob)}

  def evaluate(parts, with_test=True):
    every = jax.tree.map(lambda a: np.broadcast_to(a, (n,) + a.shape),
                         sim.params)
    if not with_test:
      return {"personal_accuracy": float(market_lib.client_accuracy(
          algo.model, every, parts=parts).mean())}
    tuned = market_lib.local_finetune(
        groups[0].module, sim.params, clients, optimizer=_optimizer(config),
        steps=distill_steps(config), batch_size=config.batch_size,
        seed=seed + sim.round)
    return {**scores(every, parts), **scores(tuned, parts, "ft_")}

  return sim, step, evaluate


def _build(kind, options, config, seed, clients, reference, test):
  build = baseline_method if kind in BASELINE_KINDS else market_method
  return build(kind, options, config, seed, clients, reference, test)


def search_knobs(name, kind, options, grid, config, seed, clients, val,
                 reference, test, rundir):
  """The candidate of ``grid`` with the best validation accuracy.

  Each candidate (``options`` updated by one point of the product of the
  ``grid`` lists) trains ``config.search_rounds`` rounds on ``clients``; its
  score is the mean over clients of the accuracy on their ``val`` part. The
  scores go to ``rundir/search.json``, which a rerun reads back.
  """
  path = os.path.join(rundir, "search.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)["chosen"]
  keys = sorted(grid)
  results = []
  for values in itertools.product(*(grid[k] for k in keys)):
    knobs = dict(zip(keys, values))
    engine, step, evaluate = _build(kind, {**options, **knobs}, config, seed,
                                    clients, reference, test)
    del engine
    for _ in range(config.search_rounds):
      step()
    score = evaluate(val, with_test=False)["personal_accuracy"]
    logging.info("%s seed %d search %s: validation accuracy %.4f", name, seed,
                 knobs, score)
    results.append({"knobs": knobs, "validation_accuracy": score})
  best = max(results, key=lambda r: r["validation_accuracy"])["knobs"]
  os.makedirs(rundir, exist_ok=True)
  with open(path, "w") as f:
    json.dump({"rounds": config.search_rounds, "candidates": results,
               "chosen": best}, f, indent=1)
  return best


def run_method(engine, step, evaluate, config, rundir):
  """Runs (or resumes) one method's engine; returns its records.

  ``evaluate()`` gives the evaluation metrics every ``eval_every`` rounds.
  """
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


def check_methods(config) -> None:
  """Fails before any run on an unknown kind, option or empty search.

  Raises:
    ValueError: naming ``config.methods.<name>`` and what is accepted.
  """
  for name, method in config.methods.items():
    kind = method["kind"]
    if kind not in knowledge.METHODS + BASELINE_KINDS:
      raise ValueError(f"config.methods.{name}: unknown kind {kind!r}; "
                       f"known: {knowledge.METHODS + BASELINE_KINDS}")
    grid = dict(method.get("search") or {})
    if kind in knowledge.METHODS:
      unknown = set(method) - {"kind", "search"} - set(MARKET_OPTIONS)
      unknown |= set(grid) - set(MARKET_OPTIONS)
      if unknown:
        raise ValueError(f"config.methods.{name}: unknown options "
                         f"{sorted(unknown)}; known: {MARKET_OPTIONS}")
    if grid and not config.validation_fraction:
      raise ValueError(f"config.methods.{name}: a search needs a validation "
                       "split, config.validation_fraction in (0, 1)")
    empty = [k for k, v in grid.items() if not len(v)]
    if empty:
      raise ValueError(f"config.methods.{name}.search: no candidates for "
                       f"{empty}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs every method for every seed; returns ``{method: [records/seed]}``."""
  check_methods(config)
  runs = {name: [] for name in config.methods}
  for seed in config.seeds:
    clients, val, held, reference, test = load_data(config, seed)
    for name, method in config.methods.items():
      kind = method["kind"]
      options = {k: v for k, v in dict(method).items()
                 if k not in ("kind", "search")}
      rundir = os.path.join(workdir, name, f"seed{seed}")
      if method.get("search"):
        grid = {k: list(v) for k, v in dict(method["search"]).items()}
        options.update(search_knobs(name, kind, options, grid, config, seed,
                                    clients, val, reference, test, rundir))
      engine, step, evaluate = _build(kind, options, config, seed, clients,
                                      reference, test)
      runs[name].append(run_method(engine, step, lambda: evaluate(held),
                                   config, rundir))
  training.write_summary(workdir, runs, COLUMNS, plots=PLOTS,
                         y="personal_accuracy", baseline="fedavg",
                         bytes_key="total_bytes")
  return runs


__all__ = ["baseline_algorithm", "check_methods", "client_groups",
           "distill_steps", "load_data", "search_knobs", "train_and_evaluate"]
