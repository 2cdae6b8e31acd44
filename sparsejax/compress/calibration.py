"""The constant hard threshold that spends a target total volume.

Sahu et al. compare a *constant* threshold with top-k at the same total data
volume; ``1 / (2 sqrt(k))`` (:func:`sparsejax.volume_matched_threshold`) is
only a first guess (on an MNIST MLP it sent 3.6x top-k's volume).
:func:`calibrate_threshold` finds the constant by pilot runs: the volume a
run sends decreases with ``lambda``, so it brackets the target and narrows
the bracket (secant steps on ``log volume`` against ``log lambda``, a
bisection in ``log lambda`` when the secant stalls) until a pilot's total is
within ``rtol`` of the target. Pilots are cached in a JSON file, so a rerun
(or a calibration to another target on the same setup) reuses them.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Callable, NamedTuple

from sparsejax.compress.base import check_int
from sparsejax.compress.base import check_number

CACHE_FORMAT = "sparsejax.calibrate_threshold/1"


class Pilot(NamedTuple):
  """One pilot run: its constant threshold, total volume and spend per step."""
  threshold: float
  volume: float
  spend: tuple[float, ...] | None  # per step, if the pilot reported it
  cached: bool                     # read from the cache, not run


class Calibration(NamedTuple):
  """The calibrated constant threshold, its volume and every pilot consulted.

  ``history`` is in the order the pilots were consulted; ``spend`` is the
  chosen pilot's spend per step (``None`` if not reported).
  """
  threshold: float
  volume: float
  history: tuple[Pilot, ...]

  @property
  def spend(self) -> tuple[float, ...] | None:
    return next(p.spend for p in self.history
                if p.threshold == self.threshold)


def calibrate_threshold(run_volume: Callable[[float], object], target: float,
                        *, lo: float, hi: float, rtol: float = 0.02,
                        max_iters: int = 20,
                        cache_path: str | os.PathLike | None = None,
                        widen: bool = False) -> Calibration:
  """The constant threshold whose run spends ``target`` within ``rtol``.

  Args:
    run_volume: ``lambda -> volume`` or ``lambda -> (volume, spend)``: a
      pilot run with the constant threshold ``lambda`` (e.g. a short training
      run with ``sj.error_feedback(sj.hard_threshold(lambda))``) returning
      the total it sent (elements or bits, as ``target``) and optionally its
      spend per step.
    target: the total volume to match, e.g. top-k's over the same run.
    lo, hi: ``0 < lo < hi``, thresholds whose volumes bracket the target
      (``volume(lo) >= target >= volume(hi)``).
    rtol: relative tolerance on the volume, in ``(0, 1)``.
    max_iters: pilots allowed after ``lo`` and ``hi``.
    cache_path: JSON file of pilots keyed by threshold, read if it exists
      and written after every new pilot; use one file per setup (model, data,
      seed, steps, compressor arguments): a cached pilot is never rerun.
    widen: when ``[lo, hi]`` does not bracket the target, move the bound
      that misses by factors of 4 (each move a pilot, counted in
      ``max_iters``) instead of raising: for a first guess such as
      ``lo, hi = lam0 / 2, 2 * lam0``.

  Returns:
    A :class:`Calibration`; its ``history`` holds every pilot consulted.

  Raises:
    ValueError: bad arguments, a bracket that does not contain the target
      (the message says which bound to move), a pilot that returned no
      finite volume, or an unreadable cache file.
    RuntimeError: no pilot within ``rtol`` after ``max_iters`` (the message
      gives the closest one; the pilots are cached for a rerun).

  Example:
    >>> import sparsejax as sj
    >>> cal = sj.calibrate_threshold(lambda lam: 1000.0 / lam**2, 250.0,
    ...                              lo=0.1, hi=10.0)
    >>> round(cal.threshold, 2), abs(cal.volume - 250.0) <= 5.0
    (2.0, True)
  """
  if not callable(run_volume):
    raise TypeError(f"run_volume must be a function lambda -> volume, got "
                    f"{type(run_volume).__name__}")
  check_number(target, "target", 0, low_open=True)
  check_number(lo, "lo", 0, low_open=True)
  check_number(hi, "hi", lo, low_open=True)
  check_number(rtol, "rtol", 0, 1, low_open=True, high_open=True)
  max_iters = check_int(max_iters, "max_iters", 0)
  lo, hi, target = float(lo), float(hi), float(target)
  cache = _Cache(cache_path)
  history = []

  def pilot(lam: float) -> Pilot:
    found = cache.get(lam)
    if found is None:
      found = _run(run_volume, lam)
      cache.put(found)
    history.append(found)
    return found

  def done(p: Pilot) -> bool:
    return abs(p.volume - target) <= rtol * target

  def result(p: Pilot) -> Calibration:
    return Calibration(p.threshold, p.volume, tuple(history))

  low, high = pilot(lo), pilot(hi)
  for p in (low, high):
    if done(p):
      return result(p)
  while widen and max_iters > 0 and (low.volume < target
                                     or high.volume > target):
    max_iters -= 1
    if low.volume < target:   # lambda too large even at lo: go lower
      high, low = low, pilot(low.threshold / 4)
      found = low
    else:
      low, high = high, pilot(high.threshold * 4)
      found = high
    if done(found):
      return result(found)
  if low.volume < target:
    raise ValueError(f"target volume {target:g} is above the volume at "
                     f"lo={low.threshold:g} ({low.volume:g}): lower lo"
                     + (" or raise max_iters" if widen else
                        " (or pass widen=True)"))
  if high.volume > target:
    raise ValueError(f"target volume {target:g} is below the volume at "
                     f"hi={high.threshold:g} ({high.volume:g}): raise hi"
                     + (" or raise max_iters" if widen else
                        " (or pass widen=True)"))
  lo, hi = low.threshold, high.threshold
  for p in cache.between(lo, hi):  # earlier pilots narrow the bracket
    history.append(p)
    if done(p):
      return result(p)
    if p.volume < target:
      high = p
      break
    low = p
  kept = 0  # consecutive times the same bound was kept: then bisect
  for _ in range(max_iters):
    p = pilot(_next_threshold(low, high, target, bisect=abs(kept) >= 2))
    if done(p):
      return result(p)
    if p.volume > target:
      low, kept = p, max(kept, 0) + 1
    else:
      high, kept = p, min(kept, 0) - 1
  best = min(history, key=lambda q: abs(q.volume - target))
  raise RuntimeError(
      f"no threshold within rtol={rtol:g} of target {target:g} after "
      f"{max_iters} pilots; closest: lambda={best.threshold:.6g} with volume "
      f"{best.volume:g}; bracket [{low.threshold:.6g}, {high.threshold:.6g}] "
      f"with volumes [{low.volume:g}, {high.volume:g}]. If the volume jumps "
      "there (a small or noisy pilot), raise rtol; otherwise raise max_iters"
      + (" (the pilots are cached)" if cache_path is not None else ""))


def _run(run_volume, lam: float) -> Pilot:
  out = run_volume(lam)
  volume, spend = out if isinstance(out, tuple) else (out, None)
  try:
    volume = float(volume)
    spend = None if spend is None else tuple(float(s) for s in spend)
  except (TypeError, ValueError):
    raise ValueError(f"run_volume({lam:g}) must return a volume or (volume, "
                     f"spend per step), got {out!r}") from None
  if not math.isfinite(volume) or volume < 0:
    raise ValueError(f"run_volume({lam:g}) returned volume {volume}; it must "
                     "be a finite number >= 0")
  return Pilot(lam, volume, spend, False)


def _next_threshold(low: Pilot, high: Pilot, target: float,
                    bisect: bool) -> float:
  """Secant in log-log space inside the bracket, else its geometric middle."""
  x0, x1 = math.log(low.threshold), math.log(high.threshold)
  middle = math.exp((x0 + x1) / 2)
  if bisect or high.volume <= 0 or low.volume <= high.volume:
    return middle
  y0, y1 = math.log(low.volume), math.log(high.volume)
  x = x0 + (math.log(target) - y0) * (x1 - x0) / (y1 - y0)
  margin = 0.01 * (x1 - x0)
  return math.exp(min(max(x, x0 + margin), x1 - margin))


class _Cache:
  """Pilots by threshold in a JSON file (nothing kept without a path)."""

  def __init__(self, path):
    self.path = None if path is None else pathlib.Path(path)
    self.pilots: dict[str, dict] = {}
    if self.path is not None and self.path.exists():
      try:
        data = json.loads(self.path.read_text())
        if data.get("format") != CACHE_FORMAT:
          raise ValueError(f"format is {data.get('format')!r}")
        self.pilots = {k: {"volume": float(v["volume"]), "spend": v["spend"]}
                       for k, v in data["pilots"].items()}
      except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"cache_path {self.path} is not a calibration cache "
                         f"({e}); delete it or pass another cache_path"
                         ) from None

  def get(self, lam: float) -> Pilot | None:
    entry = self.pilots.get(repr(lam))
    if entry is None:
      return None
    spend = entry["spend"]
    return Pilot(lam, entry["volume"],
                 None if spend is None else tuple(spend), True)

  def put(self, p: Pilot) -> None:
    self.pilots[repr(p.threshold)] = {
        "volume": p.volume,
        "spend": None if p.spend is None else list(p.spend)}
    if self.path is None:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False,
                                     suffix=".tmp") as f:
      json.dump({"format": CACHE_FORMAT, "pilots": self.pilots}, f)
    os.replace(f.name, self.path)

  def between(self, lo: float, hi: float) -> list[Pilot]:
    """The cached pilots with ``lo < threshold < hi``, by threshold."""
    return sorted((self.get(float(k)) for k in self.pilots
                   if lo < float(k) < hi), key=lambda p: p.threshold)
