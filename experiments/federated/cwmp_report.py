r"""Multi-seed report of CWMP against top-k at equal uplink energy.

    python -m experiments.federated.cwmp_report \
        --roots=/tmp/cwmp_runs/etx0,/tmp/cwmp_runs/etx2,/tmp/cwmp_runs/etx20 \
        --dense=/tmp/cwmp_runs/dense --out=/tmp/cwmp_runs/report

Each root is one cost setting (its name, e.g. ``etx2``, labels it) holding
``<seed>/<method>/metrics.jsonl`` of :mod:`configs.cwmp_cifar10_cpu`: methods
``topk_<L>pct`` (the energy-matched top-k), ``cwmp_p1_<L>pct`` and
``cwmp_p2_<L>pct`` at energy levels ``L``; ``--dense`` holds dense FedAvg
(accuracy reference). For every root, level and CWMP variant: final test
accuracy and cumulative uplink energy (mean ± std over seeds), the energy
match (per-seed ratio of CWMP's energy to top-k's) and the paired per-seed
accuracy difference CWMP - top-k with a 95% t-interval (3 or more seeds).
The verdict per root is produced by a rule (:func:`verdict_at`), never typed:
``better``/``worse`` when the interval excludes 0, ``indistinguishable``
otherwise, ``not matched`` when the energies differ by more than
``--match_tol``. Writes ``report.md``, ``report.json`` and one plot per root,
``accuracy_vs_energy_<root>.png`` (mean over seeds, band and bars = ± std).
Incomplete runs (fewer rounds than the longest) are left out and named.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np
from scipy import stats

from experiments.federated import report

ENERGY = "energy_joules"
BASELINE = "topk"
VARIANTS = ("cwmp_p1", "cwmp_p2")
_METHOD = re.compile(r"^(?P<family>.+)_(?P<pct>[0-9.]+)pct$")


def by_level(runs: report.Runs) -> dict[float, dict[str, dict[str, list]]]:
  """``{level: {family: {seed: records}}}`` from ``<family>_<L>pct`` names.

  Raises:
    ValueError: a method name does not end in ``_<L>pct``.
  """
  out: dict[float, dict[str, dict[str, list]]] = {}
  for method, seeds in runs.items():
    m = _METHOD.match(method)
    if m is None:
      raise ValueError(f"method {method!r} is not named <family>_<L>pct")
    out.setdefault(float(m["pct"]) / 100, {})[m["family"]] = dict(seeds)
  return out


def final_energy(records: Sequence[dict]) -> float:
  """Cumulative uplink energy (J) at the last round."""
  if not records or records[-1].get(ENERGY) is None:
    raise ValueError(f"a run has no {ENERGY!r} (no energy ledger)")
  return float(records[-1][ENERGY])


def paired_diff(treatment: Mapping[str, float], control: Mapping[str, float]
                ) -> dict[str, Any]:
  """Per-seed ``treatment - control`` over the seeds both have.

  Mean, std, wins/ties/losses and a 95% t-interval (``None`` under 3 pairs).
  """
  seeds = sorted(set(treatment) & set(control))
  diffs = [treatment[s] - control[s] for s in seeds]
  out = dict(report.mean_std(diffs), diffs=diffs, seeds=seeds,
             wins=sum(d > 0 for d in diffs), ties=sum(d == 0 for d in diffs),
             losses=sum(d < 0 for d in diffs), ci95=None)
  if len(diffs) >= 3:
    half = (stats.t.ppf(0.975, len(diffs) - 1) * out["std"]
            / math.sqrt(len(diffs)))
    out["ci95"] = [out["mean"] - half, out["mean"] + half]
  return out


def verdict_at(diff: Mapping[str, Any], energy_ratio: Mapping[str, Any],
               tol: float) -> str:
  """``better``/``worse``/``indistinguishable``/``too few seeds``/
  ``not matched`` for one level."""
  if energy_ratio["mean"] is None or diff["mean"] is None:
    return "too few seeds"
  if abs(energy_ratio["mean"] - 1) > tol:
    return "not matched"
  ci = diff["ci95"]
  if ci is None:
    return "too few seeds"
  if ci[0] > 0:
    return "better"
  if ci[1] < 0:
    return "worse"
  return "indistinguishable"


def analyse_root(runs: report.Runs, tol: float) -> dict[str, Any]:
  """Per level: accuracy and energy of each family, matches and verdicts."""
  levels = {}
  for level, families in sorted(by_level(runs).items()):
    acc = {f: {s: report.final_accuracy(r) for s, r in seeds.items()}
           for f, seeds in families.items()}
    energy = {f: {s: final_energy(r) for s, r in seeds.items()}
              for f, seeds in families.items()}
    row = {"families": {f: {"accuracy": report.mean_std(list(acc[f].values())),
                            "energy": report.mean_std(
                                list(energy[f].values()))}
                        for f in sorted(families)},
           "comparisons": {}}
    if BASELINE in families:
      for v in VARIANTS:
        if v not in families:
          continue
        seeds = sorted(set(energy[v]) & set(energy[BASELINE]))
        ratio = report.mean_std([energy[v][s] / energy[BASELINE][s]
                                 for s in seeds])
        diff = paired_diff(acc[v], acc[BASELINE])
        row["comparisons"][v] = {"energy_ratio": ratio, "paired": diff,
                                 "verdict": verdict_at(diff, ratio, tol)}
    levels[f"{level:g}"] = row
  return {"levels": levels}


def _pct(level: str) -> str:
  return f"{100 * float(level):g}%"


def verdict(label: str, analysis: Mapping[str, Any]) -> str:
  """One sentence per root from the per-level verdicts."""
  parts = []
  for v in VARIANTS:
    at = []
    for level, row in analysis["levels"].items():
      c = row["comparisons"].get(v)
      if c is None:
        continue
      p = c["paired"]
      ci = ("" if p["ci95"] is None else
            f", 95% CI [{100 * p['ci95'][0]:+.1f}, {100 * p['ci95'][1]:+.1f}]")
      diff = ("n/a" if p["mean"] is None else
              f"{100 * p['mean']:+.1f} ± {100 * p['std']:.1f} points{ci}")
      at.append(f"{c['verdict']} at {_pct(level)} of dense energy "
                f"({diff}; energy ratio "
                f"{c['energy_ratio']['mean'] or float('nan'):.3f})")
    if at:
      parts.append(f"CWMP {v[-2:]} vs energy-matched top-k: " + "; ".join(at))
  if not parts:
    return f"{label}: no CWMP/top-k pair to compare."
  return f"{label}: " + ". ".join(parts) + "."


def _fmt(s: Mapping[str, Any], scale: float = 1.0, digits: int = 3) -> str:
  if s["mean"] is None:
    return "-"
  return (f"{scale * s['mean']:.{digits}g} ± {scale * s['std']:.2g} "
          f"(n={s['n']})")


def markdown(results: Mapping[str, Any], dense: Mapping[str, Any] | None
             ) -> str:
  """The report's tables and verdicts."""
  lines = ["# CWMP against the energy-matched top-k", "",
           "Final test accuracy and cumulative uplink energy of all clients, "
           "mean ± std over seeds. `E/E_topk`: per-seed energy ratio to the "
           "energy-matched top-k at the same level (the match). `diff`: "
           "paired per-seed accuracy difference CWMP - top-k in points, "
           "95% t-interval, wins/ties/losses."]
  if dense is not None:
    lines += ["", f"Dense FedAvg (no compression): final accuracy "
              f"{_fmt(dense['accuracy'])}."]
  for label, res in results.items():
    lines += ["", f"## {label}", "",
              "| level | method | accuracy | energy (J) | E/E_topk | diff "
              "(points) | 95% CI | W/T/L | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for level, row in res["analysis"]["levels"].items():
      for f, s in row["families"].items():
        c = row["comparisons"].get(f)
        if c is None:
          extra = "| - | - | - | - | - |"
        else:
          p = c["paired"]
          ci = ("n < 3" if p["ci95"] is None else
                f"[{100 * p['ci95'][0]:+.2f}, {100 * p['ci95'][1]:+.2f}]")
          extra = (f"| {_fmt(c['energy_ratio'], digits=4)} | "
                   f"{_fmt(p, 100)} | {ci} | {p['wins']}/{p['ties']}/"
                   f"{p['losses']} | {c['verdict']} |")
        lines.append(f"| {_pct(level)} | {f} | {_fmt(s['accuracy'])} | "
                     f"{_fmt(s['energy'])} " + extra)
    lines += ["", "**Verdict.** " + res["verdict"]]
    if res["left_out"]:
      lines += ["", "Incomplete runs left out: " + ", ".join(res["left_out"])]
  return "\n".join(lines) + "\n"


def plot(label: str, runs: report.Runs, dense: Mapping[str, Any] | None,
         out: str) -> str:
  """Accuracy vs cumulative uplink energy, mean ± std over seeds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for method, seeds in sorted(runs.items()):
    curves = [report.evaluated(r) for r in seeds.values()]
    n = min(len(c) for c in curves)
    if n == 0:
      continue
    x = np.mean([[r[ENERGY] for r in c[:n]] for c in curves], 0)
    y = np.asarray([[r[report.ACC] for r in c[:n]] for c in curves])
    mean, std = y.mean(0), y.std(0, ddof=1) if len(curves) > 1 else 0 * y[0]
    line = ax.errorbar(x, mean, yerr=std, marker="o", ms=3, capsize=2,
                       ls="--" if method.startswith(BASELINE) else "-",
                       label=f"{method} ({len(curves)} seeds)").lines[0]
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(),
                    alpha=0.15)
  if dense is not None:
    m, s = dense["accuracy"]["mean"], dense["accuracy"]["std"]
    ax.axhspan(m - s, m + s, color="gray", alpha=0.2)
    ax.axhline(m, color="gray", lw=1, label="dense FedAvg (final)")
  ax.set_xscale("log")
  ax.set_xlabel("cumulative uplink energy, all clients (J)")
  ax.set_ylabel(report.ACC)
  ax.set_title(f"{label}: accuracy vs uplink energy (band = ± std)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  name = f"accuracy_vs_energy_{label}.png"
  fig.savefig(os.path.join(out, name), dpi=110)
  plt.close(fig)
  return name


def write_report(roots: Sequence[str], out: str, dense_root: str | None = None,
                 tol: float = 0.02) -> dict[str, Any]:
  """Reads the runs, writes ``report.md``/``report.json``/plots to ``out``."""
  os.makedirs(out, exist_ok=True)
  dense = None
  if dense_root:
    runs, _ = report.split_incomplete(report.load_runs([dense_root]))
    if "fedavg" not in runs:
      raise ValueError(f"--dense: {dense_root} holds no complete fedavg run")
    dense = {"accuracy": report.mean_std(
        [report.final_accuracy(r) for r in runs["fedavg"].values()])}
  results = {}
  for root in roots:
    label = os.path.basename(os.path.normpath(root))
    if label in results:
      raise ValueError(f"--roots: two roots are named {label!r}")
    runs, left_out = report.split_incomplete(report.load_runs([root]))
    analysis = analyse_root(runs, tol)
    results[label] = {"root": root, "analysis": analysis,
                      "verdict": verdict(label, analysis),
                      "left_out": left_out,
                      "plot": plot(label, runs, dense, out)}
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(markdown(results, dense) + "\nPlots: " + ", ".join(
        r["plot"] for r in results.values()) + "\n")
  result = {"roots": results, "dense": dense, "match_tol": tol}
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(result, f, indent=1)
  return result


FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined at run time: report modules share names)."""
  flags.DEFINE_list("roots", None, "One directory of <seed>/<method> runs "
                    "per cost setting (its name labels it).")
  flags.DEFINE_string("dense", None, "Directory of <seed>/fedavg runs.")
  flags.DEFINE_string("out", None, "Output directory.")
  flags.DEFINE_float("match_tol", 0.02, "Largest |E_cwmp / E_topk - 1| "
                     "that counts as equal energy.")


def main(argv):
  del argv
  if not FLAGS.roots or not FLAGS.out:
    raise app.UsageError("--roots and --out are required")
  if not 0 <= FLAGS.match_tol < 1:
    raise app.UsageError(f"--match_tol must be in [0, 1), got "
                         f"{FLAGS.match_tol}")
  write_report(FLAGS.roots, FLAGS.out, FLAGS.dense, FLAGS.match_tol)
  with open(os.path.join(FLAGS.out, "report.md")) as f:
    print(f.read())


if __name__ == "__main__":
  define_flags()
  app.run(main)
