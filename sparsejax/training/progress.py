"""A small rate/ETA reporter for long loops, logging through a callback.

Example::

  progress = Progress(num_steps, every=100, start=start_step)
  for step in range(start_step, num_steps):
    state, metrics = train_step(state, batch)
    progress.update(step + 1, {"loss": metrics["loss"]})

logs one short line per report (at most ``max_width`` characters, 100 by
default: metrics that do not fit are left out of the line)::

  step  300/1000 | 52.1 steps/s | ETA 13s | loss=0.3125 acc=0.9062

The rate is measured over the steps since the previous report, and never
counts the first step of the process (JIT compilation), so the first ETA is
not inflated by compile time. Metric values may be JAX arrays; they are only
converted when a line is logged. Long metric names are shortened
(:data:`SHORT_NAMES`).
"""

from __future__ import annotations

import logging as logging_lib
import math
import time
from typing import Any, Callable, Mapping

from absl import logging
import numpy as np

from sparsejax.training.plotting import format_bytes


def format_duration(seconds: float) -> str:
  """``5.8 -> '5.8s'``, ``130 -> '2m10s'``, ``7300 -> '2h01m'``."""
  if seconds is None or not math.isfinite(seconds):
    return "?"
  seconds = max(0.0, float(seconds))
  if seconds < 60:
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
  minutes, secs = divmod(int(round(seconds)), 60)
  if minutes < 60:
    return f"{minutes}m{secs:02d}s"
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m"


#: Short names of the usual metrics in progress lines.
SHORT_NAMES = {
    "train_loss": "loss", "accuracy": "train_acc", "test_accuracy": "acc",
    "test_loss": "test_loss", "uplink_bytes": "up", "downlink_bytes": "down",
    "total_bytes": "bytes", "bytes_sent": "bytes", "residual_norm": "|e|",
    "personal_accuracy": "personal", "global_accuracy": "global",
}


def format_metrics(metrics: Mapping[str, Any] | None) -> str:
  """Compact ``key=value`` string: 4 significant digits, bytes readable."""
  return " ".join(_metric_parts(metrics))


def _metric_parts(metrics: Mapping[str, Any] | None,
                  names: Mapping[str, str] | None = None) -> list[str]:
  """``name=value`` of each metric (see :func:`format_metrics`); ``names``
  renames keys (a key with "bytes" is shown in bytes under any name)."""
  if not metrics:
    return []
  parts = []
  for key, v in metrics.items():
    k = (names or {}).get(key, key)
    if isinstance(v, str):
      parts.append(f"{k}={v}")
      continue
    try:
      a = np.asarray(v)
      if a.size != 1:
        parts.append(f"{k}=<{a.shape}>")
        continue
      x = a.reshape(()).item()
    except Exception:  # pylint: disable=broad-except
      parts.append(f"{k}={v}")
      continue
    if "bytes" in key.lower() and isinstance(x, (int, float)):
      parts.append(f"{k}={format_bytes(x).replace(' ', '')}")
    elif isinstance(x, bool) or isinstance(x, int):
      parts.append(f"{k}={x}")
    else:
      parts.append(f"{k}={float(x):.4g}")
  return parts


def _format_rate(rate: float | None) -> str:
  if not rate:
    return "?"
  return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"


class Progress:
  """Reports progress, rate and ETA every ``every`` steps via ``log_fn``.

  Args:
    total: the final step number.
    every: report when ``step`` is a multiple of ``every``, and at ``total``.
    log_fn: receives one formatted line per report (default
      ``absl.logging.info``).
    start: the step the loop starts from (non-zero when resuming); rates and
      ETA count only the steps done in this process.
    every_secs: if set, also report when this many seconds passed since the
      previous report.
    unit: the word for a step (``"round"`` in federated loops).
    time_fn: clock, injectable for tests.
    max_width: the longest line; metrics that would make it longer are left
      out (they are in the metric files).
  """

  def __init__(
      self,
      total: int,
      every: int = 100,
      log_fn: Callable[[str], Any] = logging.info,
      *,
      start: int = 0,
      every_secs: float | None = None,
      unit: str = "step",
      time_fn: Callable[[], float] = time.perf_counter,
      max_width: int = 100,
  ):
    if every < 1:
      raise ValueError(f"every must be >= 1, got {every}")
    if max_width < 40:
      raise ValueError(f"max_width must be >= 40, got {max_width}")
    self.total = int(total)
    self.every = int(every)
    self.every_secs = every_secs
    self.log_fn = log_fn
    self.unit = unit
    self._time = time_fn
    self.start_step = int(start)
    self._last_t = self._time()
    self._last_step = self.start_step
    self.step = self.start_step
    self.max_width = int(max_width)
    self.rate: float | None = None  # steps/s over the last report window
    self.last_line: str | None = None

  def should_report(self, step: int) -> bool:
    if step >= self.total or step % self.every == 0:
      return True
    if self.every_secs is not None:
      return self._time() - self._last_t >= self.every_secs
    return False

  def update(self, step: int, metrics: Mapping[str, Any] | None = None,
             force: bool = False) -> str | None:
    """Records that ``step`` steps are done; logs a line when one is due.

    Returns:
      The logged line, or ``None`` if nothing was logged.
    """
    self.step = int(step)
    if self.step == self.start_step + 1:
      # The first step compiles: rates (and ETAs) start after it.
      self._last_t, self._last_step = self._time(), self.step
    if not (force or self.should_report(self.step)):
      return None
    now = self._time()
    dt = now - self._last_t
    dsteps = self.step - self._last_step
    if dsteps > 0 and dt > 0:
      self.rate = dsteps / dt
    remaining = max(0, self.total - self.step)
    if remaining == 0:
      eta = 0.0
    elif self.rate:
      eta = remaining / self.rate
    else:
      eta = math.inf
    width = len(str(self.total))
    line = " | ".join([
        f"{self.unit} {self.step:>{width}d}/{self.total}",
        f"{_format_rate(self.rate)} {self.unit}s/s",
        f"ETA {format_duration(eta)}",
    ])
    sep = " | "
    for part in _metric_parts(metrics, SHORT_NAMES):
      if len(line) + len(sep) + len(part) <= self.max_width:
        line += sep + part
        sep = " "
    self._last_t = now
    self._last_step = self.step
    self.last_line = line
    self.log_fn(line)
    return line


_NOISY_INFO = ("orbax", "xla_bridge")  # checkpoint chatter, backend probes
_BACKEND_PROBE = "Unable to initialize backend"


def quiet_checkpoint_logs() -> None:
  """Drops the INFO records of orbax (they drown progress) and JAX's backend
  probe ("Unable to initialize backend 'tpu'", any level) from absl logging."""
  class _DropOrbaxInfo(logging_lib.Filter):

    def filter(self, record):
      if _BACKEND_PROBE in str(record.msg):
        return False
      return record.levelno > logging_lib.INFO or not any(
          name in record.pathname for name in _NOISY_INFO)

  logging.get_absl_handler().addFilter(_DropOrbaxInfo())
