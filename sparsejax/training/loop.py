"""A resumable step loop: restore, run, checkpoint periodically.

Step convention (shared with :class:`~sparsejax.training.MetricsWriter`
resume truncation): checkpoint ``s`` holds the state after ``s`` completed
steps, and the metrics of the step that completes at ``s`` carry ``step=s``.
"""

from __future__ import annotations

from typing import Any, Callable

from sparsejax.training.checkpoint import Checkpointer

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

  Args:
    state: initial state, or the restore target when resuming.
    step_fn: ``(state, step_index) -> (state, metrics)``.
    num_steps: total number of steps of the run.
    checkpointer: where checkpoints are read and written.
    every: checkpoint period in steps (the final step is always saved).
    on_step: optional ``(completed_steps, state, metrics)`` callback, called
      before the checkpoint of that step is saved (log metrics here).

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
  for i in range(start, num_steps):
    state, metrics = step_fn(state, i)
    done = i + 1
    if on_step is not None:
      on_step(done, state, metrics)
    if done % every == 0 or done == num_steps:
      checkpointer.save(done, state)
  checkpointer.wait()
  return state
