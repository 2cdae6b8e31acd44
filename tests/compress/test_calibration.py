"""calibrate_threshold: the constant hard threshold spending a target volume."""

import doctest
import json
import math

import numpy as np
import pytest

import sparsejax as sj
from sparsejax.compress import calibration
import gradient_streams as gs


class CountingPilot:
  """``volume(lambda) = scale / lambda**power``, optionally noisy, counted."""

  def __init__(self, scale=1e6, power=1.5, noise=0.0, seed=0):
    self.scale, self.power, self.calls = scale, power, []
    self.noise = noise
    self.rng = np.random.default_rng(seed)

  def __call__(self, lam):
    self.calls.append(lam)
    wobble = 1 + self.noise * self.rng.uniform(-1, 1)
    volume = self.scale / lam**self.power * wobble
    return volume, [volume / 2, volume / 2]


def test_hits_the_target_on_an_error_feedback_run():
  grads = gs.stream(peak=20.0)
  target = 100 * gs.STEPS           # top-k with k = 1% of the 10k entries

  def pilot(lam):
    r = gs.run_threshold(lam, grads)
    return r.volume, r.spend

  cal = sj.calibrate_threshold(pilot, target, lo=1e-2, hi=1e4)
  assert abs(cal.volume - target) <= 0.02 * target
  # The reported volume is what the threshold really sends, step by step.
  again = gs.run_threshold(cal.threshold, grads)
  assert again.volume == cal.volume
  np.testing.assert_array_equal(cal.spend, again.spend)
  # A constant threshold on front-loaded gradients spends unevenly.
  assert again.front_share() > 0.5
  assert len(cal.history) <= 12
  assert all(not p.cached for p in cal.history)


def test_cache_is_reused_and_narrows_later_calibrations(tmp_path):
  path = tmp_path / "pilots.json"
  first = CountingPilot()
  cal = sj.calibrate_threshold(first, 1e4, lo=1.0, hi=1e4, cache_path=path)
  assert abs(cal.volume - 1e4) <= 200
  assert cal.spend == (cal.volume / 2, cal.volume / 2)

  again = CountingPilot()
  rerun = sj.calibrate_threshold(again, 1e4, lo=1.0, hi=1e4, cache_path=path)
  assert again.calls == []                       # no new pilot at all
  assert rerun.threshold == cal.threshold and rerun.volume == cal.volume
  assert all(p.cached for p in rerun.history)

  # Another target on the same setup starts from the cached bracket.
  fresh, cached = CountingPilot(), CountingPilot()
  sj.calibrate_threshold(fresh, 3e3, lo=1.0, hi=1e4)
  other = sj.calibrate_threshold(cached, 3e3, lo=1.0, hi=1e4, cache_path=path)
  assert abs(other.volume - 3e3) <= 60
  assert len(cached.calls) < len(fresh.calls)
  stored = json.loads(path.read_text())
  assert len(stored["pilots"]) == len(first.calls) + len(cached.calls)


def test_noisy_non_monotone_volumes_still_converge():
  pilot = CountingPilot(noise=0.015, seed=3)
  cal = sj.calibrate_threshold(pilot, 5e3, lo=0.5, hi=5e3)
  assert abs(cal.volume - 5e3) <= 100
  # Every pilot after the first two lies inside the bracket they formed.
  assert all(0.5 < lam < 5e3 for lam in pilot.calls[2:])


def test_target_outside_the_bracket_says_which_bound_to_move():
  pilot = CountingPilot()                        # volume(1) = 1e6
  with pytest.raises(ValueError, match="above the volume at lo=1.*lower lo"):
    sj.calibrate_threshold(pilot, 1e7, lo=1.0, hi=100.0)
  with pytest.raises(ValueError, match="below the volume at hi=100.*raise hi"):
    sj.calibrate_threshold(pilot, 10.0, lo=1.0, hi=100.0)


@pytest.mark.parametrize("target", [1e7, 10.0, 2e3])
def test_widen_moves_the_missing_bound_from_a_first_guess(target):
  pilot = CountingPilot()                        # volume(1) = 1e6
  cal = sj.calibrate_threshold(pilot, target, lo=0.5, hi=2.0, widen=True)
  assert abs(cal.volume - target) <= 0.02 * target
  # Widening moves one bound by 4x per pilot: the lambdas tried before the
  # bracket closes form a geometric walk away from the first guess.
  away = pilot.calls[2:]
  steps = [b / a for a, b in zip(away, away[1:])]
  walk = next((i for i, r in enumerate(steps) if r not in (4.0, 0.25)),
              len(steps))
  assert all(r == steps[0] for r in steps[:walk])
  # Without widen the same guess is refused, naming the bound and the flag.
  with pytest.raises(ValueError, match="widen=True"):
    sj.calibrate_threshold(CountingPilot(), target, lo=0.5, hi=2.0)


def test_widen_still_stops_at_max_iters():
  with pytest.raises(ValueError, match="lower lo or raise max_iters"):
    sj.calibrate_threshold(CountingPilot(), 1e12, lo=0.5, hi=2.0, widen=True,
                           max_iters=3)


def test_gives_up_loudly_with_the_closest_pilot(tmp_path):
  def step(lam):  # the volume jumps over the target: no lambda matches it
    return 2e4 if lam < 3.0 else 5e3

  with pytest.raises(RuntimeError, match=r"closest: lambda=.*raise rtol.*"
                     "cached"):
    sj.calibrate_threshold(step, 1e4, lo=1.0, hi=10.0, max_iters=6,
                           cache_path=tmp_path / "c.json")


@pytest.mark.parametrize("kwargs,match", [
    (dict(target=float("nan")), "target"),
    (dict(target=-1.0), "target"),
    (dict(lo=0.0), "lo"),
    (dict(hi=0.5), "hi"),
    (dict(rtol=1.0), "rtol"),
    (dict(max_iters=2.5), "max_iters"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
  args = dict(target=10.0, lo=1.0, hi=10.0) | kwargs
  with pytest.raises((ValueError, TypeError), match=match):
    sj.calibrate_threshold(CountingPilot(), **args)


def test_bad_pilot_results_and_cache_files_are_refused(tmp_path):
  with pytest.raises(ValueError, match=r"run_volume\(1\) returned volume nan"):
    sj.calibrate_threshold(lambda lam: math.nan, 10.0, lo=1.0, hi=10.0)
  with pytest.raises(ValueError, match="must return a volume"):
    sj.calibrate_threshold(lambda lam: "many", 10.0, lo=1.0, hi=10.0)
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(ValueError, match=f"{bad}.*delete it"):
    sj.calibrate_threshold(CountingPilot(), 10.0, lo=1.0, hi=10.0,
                           cache_path=bad)


def test_docstring_example():
  result = doctest.testmod(calibration, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
