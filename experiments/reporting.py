"""Reading multi-seed runs and the statistics every report uses.

The runs of a comparison live in ``<root>/<seed>/<method>/metrics.jsonl``
(one work directory of an experiment binary per seed). The report scripts
(:mod:`experiments.federated.report`, :mod:`experiments.dp_train.report`,
...) read them with :func:`load_runs`, leave out runs still in progress
(:func:`split_incomplete`) and summarise over seeds with :func:`mean_std`
and :func:`t_interval`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from sparsejax import training

ACC = "test_accuracy"

Runs = Mapping[str, Mapping[str, Sequence[dict]]]  # method -> seed -> records


def load_runs(roots: Sequence[str]) -> dict[str, dict[str, list[dict]]]:
  """``{method: {seed: records}}`` of every ``<root>/<seed>/<method>``.

  Raises:
    FileNotFoundError: a root is missing or holds no run.
    ValueError: two roots hold the same method and seed.
  """
  runs: dict[str, dict[str, list[dict]]] = {}
  for root in roots:
    if not os.path.isdir(root):
      raise FileNotFoundError(f"--roots: {root} is not a directory")
    found = False
    for seed in sorted(os.listdir(root)):
      seed_dir = os.path.join(root, seed)
      if not os.path.isdir(seed_dir):
        continue
      for method in sorted(os.listdir(seed_dir)):
        path = os.path.join(seed_dir, method)
        if not os.path.isfile(os.path.join(path, "metrics.jsonl")):
          continue
        if seed in runs.get(method, {}):
          raise ValueError(f"method {method!r} seed {seed!r} is in two roots "
                           f"(the second: {root}); give each once")
        runs.setdefault(method, {})[seed] = training.read_metrics(path)
        found = True
    if not found:
      raise FileNotFoundError(
          f"--roots: {root} holds no <seed>/<method>/metrics.jsonl")
  return runs


def split_incomplete(runs: Runs) -> tuple[dict, list[str]]:
  """Runs whose last round is the largest of all, and the others' names.

  A run still in progress (or stopped) has fewer rounds: its final accuracy
  and to-target rounds would not compare, so it is left out (and named).
  """
  last = max(recs[-1]["round"] for seeds in runs.values()
             for recs in seeds.values() if recs)
  complete, left_out = {}, []
  for method, seeds in runs.items():
    for seed, recs in seeds.items():
      if recs and recs[-1]["round"] == last:
        complete.setdefault(method, {})[seed] = recs
      else:
        left_out.append(f"{method}/{seed} ({recs[-1]['round'] if recs else 0}"
                        f" of {last} rounds)")
  return complete, left_out


def evaluated(records: Sequence[dict]) -> list[dict]:
  """The records with a finite test accuracy, in round order."""
  return [r for r in records
          if r.get(ACC) is not None and math.isfinite(r[ACC])]


def final_accuracy(records: Sequence[dict]) -> float:
  """Test accuracy of the last evaluated round."""
  ev = evaluated(records)
  if not ev:
    raise ValueError("a run has no evaluated round (no test_accuracy)")
  return ev[-1][ACC]


def mean_std(values: Sequence[float]) -> dict[str, Any]:
  """Mean, std (ddof=1; 0 for one value) and count; ``None`` mean if empty."""
  v = np.asarray(values, float)
  if v.size == 0:
    return {"mean": None, "std": None, "n": 0}
  return {"mean": float(v.mean()),
          "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def t_interval(values: Sequence[float], level: float = 0.95
               ) -> list[float] | None:
  """Student-t interval of the mean (``None`` below 3 values)."""
  v = np.asarray(values, float)
  if v.size < 3:
    return None
  half = (stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1)
          / math.sqrt(v.size))
  return [float(v.mean() - half), float(v.mean() + half)]
