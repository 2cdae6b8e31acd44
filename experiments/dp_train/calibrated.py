"""Sahu et al.'s constant threshold, calibrated to top-k's total volume.

Sahu et al. compare a *constant* hard threshold with top-k at the same
total volume. A method ``{"name": "hard_threshold", "threshold":
"calibrated", "volume_ratio": r}`` gets the constant ``lambda`` whose run
sends top-k(``r``)'s total, ``floor(r d) * num_steps * num_devices``
elements, within ``calibration_rtol`` (default 2%): pilot runs with constant
``lambda`` (error feedback, the method's other options) are full training
runs under ``workdir/calibration/ratio=<r>/lambda=<lambda>/``, started from
``config.calibration_start`` (or ``1/(2 sqrt(k))``) and found by
:func:`sparsejax.calibrate_threshold` with ``widen=True`` (pilots cached in
``calibration/ratio=<r>/pilots.json``, so a rerun reruns none). The chosen
pilot *is* the method's run: its ``metrics.jsonl`` is copied to
``<method>/metrics.jsonl`` (what reports read), and
``<method>/calibration.json`` records the target, every pilot and the spend
per logged interval. A budgeted method may start from the same
constant: ``{"name": "hard_threshold", "budget_ratio": r,
"initial_threshold": "calibrated"}``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Callable, Sequence

import sparsejax as sj

CALIBRATED = "calibrated"
METRICS_FILE = "metrics.jsonl"  # a run's records (sparsejax.training)

#: ``(lambda, ratio) -> records`` of a pilot run with constant ``lambda``.
PilotFn = Callable[[float, float], Sequence[dict]]


def is_calibrated(method) -> bool:
  """Whether a method is the calibrated constant threshold."""
  return method.get("threshold") == CALIBRATED


def pilot_name(ratio: float, lam: float) -> str:
  """The pilot run's directory under the workdir."""
  return os.path.join("calibration", f"ratio={ratio:g}", f"lambda={lam!r}")


def target_volume(ratio: float, num_params: int, num_steps: int,
                  num_devices: int) -> int:
  """Top-k(``ratio``)'s total elements over a run, all devices."""
  return max(1, math.floor(ratio * num_params)) * num_steps * num_devices


def spend_per_step(records: Sequence[dict]) -> list[float]:
  """Elements sent per step over each logged interval (all devices)."""
  spend, sent, step = [], 0, 0
  for r in records:
    spend.append((r["elements_sent"] - sent) / (r["step"] - step))
    sent, step = r["elements_sent"], r["step"]
  return spend


class Calibrator:
  """Calibrates once per ratio and remembers the result (and its records).

  Args:
    run_pilot: ``(lambda, ratio) -> records`` (a resumable training run;
      its last record carries ``elements_sent`` summed over devices).
    workdir: the experiment's work directory (pilots go under
      ``calibration/``).
    num_params, num_steps, num_devices: the run's shape, for the target.
    start: the first pilot's ``lambda`` (``0``: ``1/(2 sqrt(k))``).
    rtol: tolerance on the total volume.
  """

  def __init__(self, run_pilot: PilotFn, workdir: str, *, num_params: int,
               num_steps: int, num_devices: int, start: float = 0.0,
               rtol: float = 0.02):
    if start < 0 or not math.isfinite(start):
      raise ValueError(f"config.calibration_start must be a finite lambda "
                       f">= 0 (0: start from 1/(2 sqrt(k))), got {start}")
    self._run_pilot = run_pilot
    self._workdir = workdir
    self._shape = (num_params, num_steps, num_devices)
    self._start = start
    self._rtol = rtol
    self._done: dict[float, tuple[sj.Calibration, list[dict]]] = {}

  def threshold(self, ratio: float) -> float:
    """The calibrated constant for ``ratio``."""
    return self.calibrate(ratio)[0].threshold

  def calibrate(self, ratio: float) -> tuple[sj.Calibration, list[dict]]:
    """The calibration for ``ratio`` and the chosen pilot's records."""
    if ratio not in self._done:
      self._done[ratio] = self._calibrate(ratio)
    return self._done[ratio]

  def write(self, directory: str, ratio: float) -> None:
    """``directory/calibration.json`` (target, pilots, chosen spend) and the
    chosen pilot's ``metrics.jsonl``."""
    cal, records = self.calibrate(ratio)
    target = target_volume(ratio, *self._shape)
    os.makedirs(directory, exist_ok=True)
    shutil.copyfile(
        os.path.join(self._workdir, pilot_name(ratio, cal.threshold),
                     METRICS_FILE),
        os.path.join(directory, METRICS_FILE))
    with open(os.path.join(directory, "calibration.json"), "w") as f:
      json.dump({
          "ratio": ratio, "target_elements": target, "rtol": self._rtol,
          "threshold": cal.threshold, "elements_sent": cal.volume,
          "volume_vs_target": cal.volume / target,
          "steps": [r["step"] for r in records],
          "spend_per_step": spend_per_step(records),
          "pilots": [{"threshold": p.threshold, "elements_sent": p.volume,
                      "volume_vs_target": p.volume / target}
                     for p in cal.history],
      }, f, indent=1)

  def _calibrate(self, ratio):
    target = target_volume(ratio, *self._shape)
    records_of = {}

    def run_volume(lam):
      records = list(self._run_pilot(lam, ratio))
      records_of[lam] = records
      return records[-1]["elements_sent"], spend_per_step(records)

    root = os.path.join(self._workdir, "calibration", f"ratio={ratio:g}")
    os.makedirs(root, exist_ok=True)
    k = max(1, math.floor(ratio * self._shape[0]))
    guess = self._start or sj.volume_matched_threshold(k)
    cal = sj.calibrate_threshold(
        run_volume, target, lo=guess / 2, hi=guess * 2, rtol=self._rtol,
        widen=True, cache_path=os.path.join(root, "pilots.json"))
    if cal.threshold not in records_of:  # chosen from the cache: resume it
      run_volume(cal.threshold)
    return cal, records_of[cal.threshold]
