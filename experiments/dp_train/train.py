"""Data-parallel training with compressed gradients: one run per method.

``train_and_evaluate(config, workdir)`` trains the same model once per entry
of ``config.methods`` (a compressor config, with or without error feedback)
on ``config.num_devices`` devices over a ``shard_map`` data axis, and writes
under ``workdir/<method>/``: ``metrics.jsonl``/``.csv`` (loss, accuracy, bytes
sent, total error, residual norm, test accuracy) and orbax checkpoints that
include the per-device residuals. Rerunning with the same ``workdir`` resumes
each method exactly. ``workdir`` then gets ``accuracy_vs_bytes.png``,
``accuracy_vs_steps.png`` and ``summary.json``/``summary.md``.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Callable

from absl import logging
import jax
import ml_collections
import optax

from experiments import launch
from experiments.dp_train import calibrated
import sparsejax as sj
from sparsejax import data
from sparsejax import models
from sparsejax import parallel
from sparsejax import training


def build_compressor(method: ml_collections.ConfigDict, num_params: int,
                     num_steps: int, axis_name: str,
                     calibrated_threshold: Callable[[float], float]):
  """The aggregation transform of one method (EF optional).

  ``error_feedback``: ``True`` (default, :func:`sparsejax.error_feedback`),
  ``False`` (none) or ``"ef21"`` (:func:`sparsejax.ef21`).
  Besides the compressor's own arguments, ``threshold="volume_matched"``
  with ``volume_ratio=r`` gives Sahu et al.'s ``1/(2 sqrt(k))`` for
  ``k = floor(r d)``, ``budget_ratio=r`` a total budget equal to the
  volume of top-k(r) over the run (per worker), and
  ``initial_threshold="calibrated"`` with it starts the budgeted rule from
  ``calibrated_threshold(r)`` (:mod:`experiments.dp_train.calibrated`).
  A factory that takes ``axis_name`` (PowerSGD, the majority vote, DGC)
  gets ``axis_name`` unless the method sets it. DGC carries its own
  residual: it needs ``error_feedback=False``. ``{"name": "signum",
  "beta": 0.9, "error_feedback": False}`` is Signum (:func:`sparsejax.signum`:
  per-device momentum, then the majority vote of the signs).
  """
  method = dict(method)
  feedback = method.pop("error_feedback", True)
  if feedback not in (True, False, "ef21"):
    raise ValueError(f"error_feedback must be True, False or 'ef21', got "
                     f"{feedback!r}")
  if method.get("name") == "signum":
    if feedback:
      raise ValueError(f"signum holds momentum before the vote: set "
                       f"error_feedback=False (got {feedback!r}) and follow "
                       "it with plain SGD")
    del method["name"]
    return sj.signum(**{"axis_name": axis_name, **method})
  factory = sj.COMPRESSORS.get(method.get("name"))
  if factory is not None and "axis_name" in inspect.signature(
      factory).parameters:
    method.setdefault("axis_name", axis_name)
  if factory is sj.dgc and feedback:
    raise ValueError(f"dgc keeps its own residual and momentum: set "
                     f"error_feedback=False (got {feedback!r}) and follow it "
                     "with plain SGD")
  if method.get("threshold") == "volume_matched":
    k = max(1, math.floor(method.pop("volume_ratio") * num_params))
    method["threshold"] = sj.volume_matched_threshold(k)
  if "budget_ratio" in method:  # the volume of top-k(ratio) over the run
    ratio = method.pop("budget_ratio")
    k = max(1, math.floor(ratio * num_params))
    method.update(budget=k * num_steps, num_steps=num_steps)
    if method.get("initial_threshold") == calibrated.CALIBRATED:
      method["initial_threshold"] = calibrated_threshold(ratio)
  compressor = sj.create_compressor(method)
  if feedback == "ef21":
    return sj.ef21(compressor, axis_name=axis_name)
  if feedback:
    return sj.error_feedback(compressor, axis_name=axis_name)
  return parallel.compressed_mean(compressor, axis_name)


def _local_rows(batch, num_processes, process_index):
  rows = batch[0].shape[0] // num_processes
  return tuple(b[process_index * rows:(process_index + 1) * rows]
               for b in batch)


def split_optimizer(config, method) -> tuple[dict, dict]:
  """``(optimizer config, compressor method)`` of one method.

  A method's ``optimizer`` entry (e.g. ``{"learning_rate": 1e-3, "kwargs":
  {}}`` for signSGD) replaces those keys of ``config.optimizer`` for it.
  """
  method = dict(method)
  optimizer = dict(config.optimizer)
  optimizer.update(method.pop("optimizer", {}))
  return optimizer, method


def train_method(name, method, config, workdir, train_ds, test_ds,
                 calibrated_threshold=None):
  """Trains one method; returns its metric records."""
  optimizer, method = split_optimizer(config, method)
  workdir = os.path.join(workdir, name)
  mesh = parallel.data_mesh(config.num_devices)
  model = launch.create_model(config.model, train_ds.num_classes)
  variables = models.init_variables(model, jax.random.key(config.seed),
                                    train_ds.x[:1])
  params, model_state = jax.device_put(
      training.split_variables(variables), parallel.replicated(mesh))
  num_params = sum(x.size for x in jax.tree.leaves(params))
  tx = optax.chain(
      build_compressor(method, num_params, config.num_steps, "data",
                       calibrated_threshold),
      training.optimizer_from_config(optimizer, config.num_steps))
  opt_state = parallel.init_opt_state(tx, params, mesh)
  step_fn = parallel.make_train_step(training.classification_loss(model), tx,
                                     mesh)
  state = {"params": params, "model_state": model_state,
           "opt_state": opt_state}

  stats_fn = jax.jit(lambda s: parallel.device_sum(sj.comm_stats(s)))
  logging.info("[%s] %d parameters, %d devices, compressor %s", name,
               num_params, config.num_devices, dict(method))

  def step(state, i):
    batch = data.batch_at(train_ds, i, config.batch_size, config.seed)
    batch = parallel.global_batch(
        _local_rows(batch, jax.process_count(), jax.process_index()), mesh)
    params, model_state, opt_state, metrics = step_fn(
        state["params"], state["model_state"], state["opt_state"], batch)
    state = {"params": params, "model_state": model_state,
             "opt_state": opt_state}
    done = i + 1
    if done % config.log_every and done != config.num_steps:
      return state, None
    # The logging programs run after the step has finished on every device
    # (fewer multi-device programs in flight; see BUILD_NOTES on the XLA:CPU
    # rendezvous hangs under heavy load).
    stats = jax.block_until_ready(stats_fn(jax.block_until_ready(opt_state)))
    record = {"step": done, "loss": metrics["loss"],
              "accuracy": metrics["accuracy"],
              "bytes_sent": stats["bytes_sent"],
              "elements_sent": stats["elements_sent"],
              "total_error": stats.get("total_error", 0.0),
              "residual_norm": stats.get("residual_norm", 0.0),
              "nonfinite_steps": stats.get("nonfinite_steps", 0)}
    if done % config.eval_every == 0 or done == config.num_steps:
      record.update(training.evaluate(model, params, model_state, test_ds))
    return state, record

  with training.Checkpointer(os.path.join(workdir, "checkpoints")) as ckpt:
    return training.run_logged(
        workdir, ckpt, state, step, config.num_steps,
        checkpoint_every=config.checkpoint_every, log_every=config.log_every,
        progress_keys=("loss", "test_accuracy", "bytes_sent", "total_error"))


def _num_params(config, train_ds) -> int:
  model = launch.create_model(config.model, train_ds.num_classes)
  variables = jax.eval_shape(lambda: models.init_variables(
      model, jax.random.key(0), train_ds.x[:1]))
  params, _ = training.split_variables(variables)
  return sum(x.size for x in jax.tree.leaves(params))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, naming the option, before any data is read."""
  if config.dataset.name not in data.DATASET_NAMES:
    raise ValueError(f"config.dataset.name: unknown dataset "
                     f"{config.dataset.name!r}; known: {data.DATASET_NAMES}")
  if config.batch_size % config.num_devices:
    raise ValueError(f"config.batch_size {config.batch_size} must be a "
                     f"multiple of config.num_devices {config.num_devices}")
  if config.num_devices > jax.device_count():
    raise ValueError(f"config.num_devices {config.num_devices} > the "
                     f"{jax.device_count()} devices available")
  launch.create_model(config.model, 2)
  for name, method in config.methods.items():
    optimizer, method = split_optimizer(config, method)
    try:
      training.optimizer_from_config(optimizer, config.num_steps)
    except (ValueError, TypeError) as e:
      raise ValueError(f"config.optimizer (method {name}): {e}") from e
    if calibrated.is_calibrated(method):
      method = dict(method, threshold=1.0)
      if not 0 < method.pop("volume_ratio", 0) <= 1:
        raise ValueError(f"config.methods.{name}: threshold='calibrated' "
                         "needs volume_ratio in (0, 1]")
    try:
      build_compressor(method, 1000, config.num_steps, "data",
                       lambda ratio: 1.0)
    except (ValueError, TypeError) as e:
      raise ValueError(f"config.methods.{name}: {e}") from e


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs every method of ``config.methods``; returns ``{method: records}``."""
  validate_config(config)
  train_ds, test_ds = launch.load_dataset(config.dataset)

  def pilot(lam, ratio):
    method = {"name": "hard_threshold", "threshold": lam}
    return train_method(calibrated.pilot_name(ratio, lam), method, config,
                        workdir, train_ds, test_ds)

  calibrator = calibrated.Calibrator(
      pilot, workdir, num_params=_num_params(config, train_ds),
      num_steps=config.num_steps, num_devices=config.num_devices,
      start=config.get("calibration_start", 0.0),
      rtol=config.get("calibration_rtol", 0.02))
  runs = {}
  for name, method in config.methods.items():
    if calibrated.is_calibrated(method):
      ratio = method["volume_ratio"]
      runs[name] = calibrator.calibrate(ratio)[1]
      calibrator.write(os.path.join(workdir, name), ratio)
    else:
      runs[name] = train_method(name, method, config, workdir, train_ds,
                                test_ds, calibrator.threshold)
  training.write_summary(
      workdir, {k: [v] for k, v in runs.items()}, COLUMNS, plots=PLOTS,
      target=config.get("target_accuracy"), target_keys=("step", "bytes_sent"),
      baseline="dense", bytes_key="bytes_sent")
  return runs


#: The summary's figures and columns (:func:`sparsejax.training.write_summary`).
PLOTS = (
    training.Plot("accuracy_vs_bytes.png", "bytes_sent", "test_accuracy",
                  title="test accuracy vs bytes sent (all devices)"),
    training.Plot("accuracy_vs_steps.png", "step", "test_accuracy", logx=False,
                  title="test accuracy vs steps"))
COLUMNS = (training.Column("final test acc", "test_accuracy"),
           training.Column("best test acc", "test_accuracy", "max"),
           training.Column("bytes sent", "bytes_sent"),
           training.Column("total error", "total_error"))


__all__ = ["build_compressor", "train_and_evaluate", "train_method",
           "validate_config"]
