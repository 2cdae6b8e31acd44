"""Federated training with compressed uplinks: one simulation per method.

``train_and_evaluate(config, workdir)`` partitions ``config.dataset`` into
clients, then for each entry of ``config.methods`` (an algorithm, optionally a
compressor, ``alpha``/``mu``, a ``server_opt`` (``server_optimizer``), a
``downlink`` or SCAFFOLD's ``control_compressor`` compressor spec) runs a
:class:`sparsejax.federated.Simulation`
and writes under ``workdir/<method>/``: ``metrics.jsonl``/``.csv`` (one record
per round: train loss, residual norm, gradient mismatch, exact uplink and
downlink bits, cumulative bytes, test accuracy every ``eval_every`` rounds)
and orbax checkpoints of the whole simulation state (global model, every
client's residual, ledger, PRNG key). Rerunning with the same ``workdir``
resumes each method exactly. ``workdir`` then gets PNG plots of test
accuracy against rounds, uplink bytes and total bytes (and uplink energy for
compressors wrapped by ``energy_costs`` and for ``cost_weighted``; the
``"energy_table"`` costs of both transmit at ``config.tx_pj_per_bit`` pJ/bit
when set), and ``summary.md``/
``summary.json`` with rounds-to-target and bytes-to-target.
"""

from __future__ import annotations

import functools
import math
import os

from absl import logging
import ml_collections
import optax

from experiments import launch
import sparsejax as sj
from sparsejax import federated
from sparsejax import training
from sparsejax.compress import costs as costs_lib
from sparsejax.training import optim

#: The summary's figures, columns and to-target keys
#: (:func:`sparsejax.training.write_summary`); the energy plot only has the
#: methods whose uplink meters energy.
PLOTS = (
    training.Plot("accuracy_vs_round.png", "round", "test_accuracy",
                  logx=False, title="test accuracy vs rounds"),
    training.Plot("accuracy_vs_uplink_bytes.png", "uplink_bytes",
                  "test_accuracy",
                  title="test accuracy vs uplink bytes (all clients)"),
    training.Plot("accuracy_vs_total_bytes.png", "total_bytes",
                  "test_accuracy",
                  title="test accuracy vs uplink + downlink bytes"),
    training.Plot("accuracy_vs_energy.png", "energy_joules", "test_accuracy",
                  title="test accuracy vs uplink energy (J)"))
COLUMNS = (training.Column("final test acc", "test_accuracy"),
           training.Column("best test acc", "test_accuracy", "max"),
           training.Column("uplink bytes", "uplink_bytes"),
           training.Column("downlink bytes", "downlink_bytes"),
           training.Column("uplink energy J", "energy_joules"))
TARGET_KEYS = ("round", "uplink_bytes", "total_bytes")


def local_schedule(local: ml_collections.ConfigDict, num_rounds: int):
  """``round -> lr`` of the local optimizer (:func:`local_optimizer`)."""
  return optim.warmup_cosine_schedule(local.lr, local.lr_min,
                                      local.warmup_rounds, num_rounds)


def local_optimizer(local: ml_collections.ConfigDict, num_rounds: int):
  """``round -> optax`` SGD, fresh each round, weight decay added first.

  The lr over rounds is the SA-PEF code's: ``lr * r / W`` in rounds ``r =
  1..W`` (``W = local.warmup_rounds``), then cosine to ``local.lr_min`` at
  the last round (:func:`sparsejax.training.optim.warmup_cosine_schedule`).
  """
  schedule = local_schedule(local, num_rounds)
  return lambda rnd: optax.chain(
      optax.add_decayed_weights(local.weight_decay),
      optax.sgd(schedule(rnd), momentum=local.momentum or None))


def cost_model(costs, config: ml_collections.ConfigDict):
  """A method's ``costs``, with the config's transmit energy per bit.

  ``"energy_table"`` becomes :func:`sparsejax.energy_table_costs` at
  ``config.tx_pj_per_bit`` pJ per bit when the config sets it (the preset's
  default otherwise); other cost specs are returned as they are.
  """
  e_tx = config.get("tx_pj_per_bit")
  if costs != "energy_table" or e_tx is None:
    return costs
  if not (isinstance(e_tx, (int, float)) and math.isfinite(e_tx)
          and e_tx >= 0):
    raise ValueError(f"config.tx_pj_per_bit must be a finite number >= 0 "
                     f"(pJ per bit), got {e_tx!r}")
  return functools.partial(sj.energy_table_costs,
                           tx_joules_per_bit=e_tx * costs_lib.PJ)


#: The server optimizers a method's ``server_opt`` may name (FedOpt).
SERVER_OPTIMIZERS = {"adam": optax.adam, "yogi": optax.yogi,
                     "adagrad": optax.adagrad, "sgd": optax.sgd}


def server_optimizer(spec) -> optax.GradientTransformation:
  """The optax optimizer of ``{"name": ..., **kwargs}``, e.g. FedAdam's
  ``{"name": "adam", "learning_rate": 1e-2, "b1": 0.9, "b2": 0.99,
  "eps": 1e-3}`` (Reddi et al., ICLR 2021)."""
  spec = dict(spec)
  name = spec.pop("name", None)
  if name not in SERVER_OPTIMIZERS:
    raise ValueError(f"server_opt name must be one of "
                     f"{sorted(SERVER_OPTIMIZERS)}, got {name!r}")
  return SERVER_OPTIMIZERS[name](**spec)


def momentum_gain(momentum: float, steps: int) -> float:
  """How much further ``steps`` SGD steps with heavy-ball ``momentum``
  (fresh each round) move than plain SGD, for a constant gradient.

  ``y_K - y_0 = -lr g sum_{k=1..K} (1 - m^k) / (1 - m)``, so SCAFFOLD's
  option II, ``c_i+ = c_i - c + (x - y_K) / (K eta_l)``, estimates the
  gradient only with ``eta_l = lr`` times this gain (1 for ``m = 0``; 4.1
  for ``m = 0.9``, ``K = 10``). Without it the control variates come out
  ``gain`` times too large and SCAFFOLD diverges.
  """
  if momentum == 0:
    return 1.0
  return sum((1 - momentum ** k) / (1 - momentum)
             for k in range(1, steps + 1)) / steps


def build_algorithm(method: ml_collections.ConfigDict, config, model):
  """The :class:`~sparsejax.federated.FederatedAlgorithm` of one method."""
  method = dict(method)
  name = method.pop("algorithm")
  if name not in federated.ALGORITHMS:
    raise ValueError(f"unknown algorithm {name!r}; known: "
                     f"{sorted(federated.ALGORITHMS)}")
  compressor = method.pop("compressor", None)
  if compressor is not None:
    compressor = dict(compressor)
    if "costs" in compressor:  # cost_weighted
      compressor["costs"] = cost_model(compressor["costs"], config)
    compressor = sj.create_compressor(compressor)
    if "energy_costs" in method:  # an energy ledger on any compressor
      compressor = sj.energy_metered(
          compressor, cost_model(method.pop("energy_costs"), config))
    method["compressor"] = compressor
  # Of a periodic residual reset, SCAFFOLD's control variate upload, the
  # compressed downlink.
  for key in ("reset_compressor", "control_compressor", "downlink"):
    if key in method:
      method[key] = sj.create_compressor(method[key])
  if "server_opt" in method:
    method["server_opt"] = server_optimizer(method["server_opt"])
  if name == "scaffold":  # option II's eta_l: the local optimizer's step
    schedule = local_schedule(config.local, config.num_rounds)
    gain = momentum_gain(config.local.momentum or 0.0, config.local.steps)
    method.setdefault("local_lr", lambda rnd: gain * schedule(rnd))
  if method.get("alpha") == "auto":
    method.setdefault("local_lr", config.local.lr)
  return federated.ALGORITHMS[name](
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
      dropout_rate=config.dropout_rate,
      mismatch_alpha=config.get("mismatch_alpha"),
      client_store=config.get("client_store", "device"),
      store_dir=(None if config.get("store_dir") is None
                 else os.path.join(config.store_dir, name)))
  rounds = sim.run(config.num_rounds)  # continues from a restored round

  def step(state, i):
    del state, i  # the simulation holds its state
    _, metrics = next(rounds)
    return sim.state, metrics

  with training.Checkpointer(os.path.join(workdir, "checkpoints")) as ckpt:
    if sim.client_store is not None and sim.client_store.files():
      # mmap store: the clients go to streamed file snapshots, not into RAM.
      ckpt = training.ClientStoreCheckpointer(ckpt, sim.client_store)
    return training.run_logged(
        workdir, ckpt, sim.state, step, config.num_rounds,
        checkpoint_every=config.checkpoint_every, log_every=config.log_every,
        unit="round", on_restore=lambda _, state: sim.restore(state),
        progress_keys=("train_loss", "test_accuracy", "uplink_bytes",
                       "residual_norm"))


def load_clients(config):
  """``(ClientData, test Dataset)`` from the dataset and partition config."""
  train_ds, test_ds = launch.load_dataset(config.dataset)
  return launch.partition(train_ds, config.partition, config.seed), test_ds


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs every method of ``config.methods``; returns ``{method: records}``."""
  clients, test_ds = load_clients(config)
  module = launch.create_model(config.model, test_ds.num_classes)
  model = federated.classifier(module, test_ds.x[:1])
  runs = {}
  for name, method in config.methods.items():
    algo = build_algorithm(method, config, model)
    logging.info("[%s] %s", name, method.to_dict())
    runs[name] = run_method(name, algo, config, workdir, clients, test_ds)
  training.write_summary(
      workdir, {k: [v] for k, v in runs.items()}, COLUMNS, plots=PLOTS,
      target=config.get("target_accuracy"), target_keys=TARGET_KEYS)
  return runs


__all__ = ["SERVER_OPTIMIZERS", "build_algorithm", "cost_model",
           "load_clients", "local_optimizer", "local_schedule",
           "momentum_gain", "run_method", "server_optimizer",
           "train_and_evaluate"]
