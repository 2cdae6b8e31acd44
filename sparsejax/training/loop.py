"""A resumable step loop: restore, run, checkpoint periodically, log.

Step convention (shared with :class:`~sparsejax.training.MetricsWriter`
resume truncation): checkpoint ``s`` holds the state after ``s`` completed
steps, and the metrics of the step that completes at ``s`` carry ``step=s``
(or ``round=s``).

:func:`run_with_checkpoints` is the loop; :func:`run_logged` adds what every
experiment binary writes beside it: the metric files and progress lines.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from absl import logging

from sparsejax.training.checkpoint import Checkpointer
from sparsejax.training.metrics import MetricsWriter
from sparsejax.training.metrics import read_metrics
from sparsejax.training.progress import Progress

State = Any
StepFn = Callable[[State, int], tuple[State, Any]]
OnStep = Callable[[int, State, Any], Any]


def run_with_checkpoints(
    state: State,
    step_fn: StepFn,
    num_steps: int,
    checkpointer: Checkpointer,
    every: int,
    on_step: OnStep | None = None,
    *,
    on_restore: Callable[[int, State], Any] | None = None,
) -> State:
  """Runs ``step_fn`` up to ``num_steps`` completed steps, resuming if possible.

  If ``checkpointer`` has a checkpoint, ``state`` is used only as the restore
  target and the loop continues after the latest saved step; otherwise it is
  the initial state. The loop is::

    for i in range(start, num_steps):
      state, metrics = step_fn(state, i)        # i: 0-based step index
      on_step(i + 1, state, metrics)            # i + 1 steps completed
      if (i + 1) % every == 0 or i + 1 == num_steps:
        checkpointer.save(i + 1, state)

  Everything that must resume exactly (parameters, optimizer state, RNG key,
  data-iterator position) must live in ``state``. Pending saves are awaited
  before returning.

  An engine that keeps its own state (:class:`~sparsejax.federated.Simulation`,
  :class:`~sparsejax.federated.Market`) passes ``state=engine.state``, adopts
  a restored checkpoint in ``on_restore`` (``engine.restore``), and has
  ``step_fn`` step the engine and return ``engine.state``.

  Args:
    state: initial state, or the restore target when resuming.
    step_fn: ``(state, step_index) -> (state, metrics)``.
    num_steps: total number of steps of the run.
    checkpointer: where checkpoints are read and written.
    every: checkpoint period in steps (the final step is always saved).
    on_step: optional ``(completed_steps, state, metrics)`` callback, called
      before the checkpoint of that step is saved (log metrics here).
    on_restore: optional ``(step, restored_state)`` callback, called once
      after a checkpoint was restored, before the first step.

  Returns:
    The state after ``num_steps`` steps.
  """
  if every < 1:
    raise ValueError(f"every must be >= 1, got {every}")
  start = checkpointer.latest_step()
  if start is None:
    start = 0
  else:
    state = checkpointer.restore(start, target=state)
    if on_restore is not None:
      on_restore(start, state)
  for i in range(start, num_steps):
    state, metrics = step_fn(state, i)
    done = i + 1
    if on_step is not None:
      on_step(done, state, metrics)
    if done % every == 0 or done == num_steps:
      checkpointer.save(done, state)
  checkpointer.wait()
  return state


def run_logged(
    directory: str,
    checkpointer: Checkpointer,
    state: State,
    step_fn: Callable[[State, int], tuple[State, Mapping[str, Any] | None]],
    num_steps: int,
    *,
    checkpoint_every: int,
    log_every: int,
    unit: str = "step",
    progress_keys: Sequence[str] | None = None,
    on_restore: Callable[[int, State], Any] | None = None,
    log_fn: Callable[[str], Any] = logging.info,
) -> list[dict[str, Any]]:
  """:func:`run_with_checkpoints` with the metric files and progress of a run.

  Writes ``directory/metrics.jsonl``/``.csv``: one record per step whose
  ``step_fn`` returned one; a resumed run keeps the records up to its
  checkpoint (:class:`~sparsejax.training.MetricsWriter`). A progress line
  every ``log_every`` steps (:class:`~sparsejax.training.Progress`, at most
  100 characters) shows the last record.

  Example::

    with training.Checkpointer(os.path.join(rundir, "checkpoints")) as ckpt:
      records = training.run_logged(rundir, ckpt, state, step_fn, num_steps,
                                    checkpoint_every=100, log_every=10)

  Args:
    directory: where the metric files go.
    checkpointer, state, num_steps, on_restore: as in
      :func:`run_with_checkpoints`.
    step_fn: ``(state, step_index) -> (state, record or None)``; a record is
      a flat dict of scalars that carries ``step`` (or ``round``).
    checkpoint_every: checkpoint period in steps (the last step is saved).
    log_every: progress period in steps.
    unit: the word for a step in the progress lines (``"round"``).
    progress_keys: the record keys shown in progress lines, in this order
      (``None``: all but the step); those that do not fit are left out.
    log_fn: receives the progress lines and the resume message.

  Returns:
    All records of the run, read back from ``metrics.jsonl`` (so a resumed
    run returns the earlier records too).
  """
  start = checkpointer.latest_step()
  writer = MetricsWriter(directory, resume_step=start)
  progress = Progress(num_steps, every=log_every, log_fn=log_fn,
                      start=start or 0, unit=unit)
  if start:
    log_fn(f"{directory}: resumed after {unit} {start}")

  def on_step(done, state, record):
    del state
    if record is not None:
      writer.write(record)
      keys = record if progress_keys is None else progress_keys
      record = {k: record[k] for k in keys
                if k in record and k not in writer.step_keys}
    progress.update(done, record)

  run_with_checkpoints(state, step_fn, num_steps, checkpointer,
                       checkpoint_every, on_step, on_restore=on_restore)
  return read_metrics(directory)
