r"""Multi-seed report of an SA-PEF vs EF comparison, from the runs' metrics.

    python -m experiments.federated.report \
        --roots=/tmp/sapef_runs/femnist,/tmp/sapef_runs/femnist_ablation \
        --out=/tmp/sapef_runs/femnist_report

Each root holds one workdir of ``experiments.federated.main`` per seed
(``<root>/<seed>/<method>/metrics.jsonl``); the methods of several roots
with the same seed names are merged. Targets are fractions (``--fractions``)
of FedAvg's final test accuracy (mean over seeds). For every method and
target: rounds, uplink bytes and total bytes to the target (mean ± std over
the seeds that reach it, and how many did); for ``--treatment`` minus
``--control`` (SA-PEF minus EF) the paired per-seed difference in rounds:
mean, std, sign count and a 95% t-interval (``n >= 3`` pairs; a run that
never reaches counts at its last round, a bound). Runs with fewer rounds
than the longest (in progress) are left out and named in the report. The
verdict is produced by a rule (:func:`verdict`), never typed.
``--sweep=ef:0,sapef_a025:0.25,...`` names the methods of an alpha sweep
(method:alpha): a table and a plot of final accuracy and rounds to each
target against alpha (mean ± std over seeds).
Writes ``report.md``, ``report.json`` and PNG plots (accuracy vs rounds and
vs uplink bytes with seed bands, mechanism metrics vs rounds, the sweep)
into ``--out``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np

from experiments.reporting import ACC
from experiments.reporting import evaluated
from experiments.reporting import final_accuracy
from experiments.reporting import load_runs
from experiments.reporting import mean_std
from experiments.reporting import Runs
from experiments.reporting import split_incomplete
from experiments.reporting import t_interval

TO_TARGET_KEYS = ("round", "uplink_bytes", "total_bytes")
MECHANISM = ("residual_norm", "grad_mismatch", "train_loss")



def first_reach(records: Sequence[dict], target: float) -> dict | None:
  """``TO_TARGET_KEYS`` at the first evaluation with accuracy >= target.

  ``None`` if never reached; then ``"last_round"`` of a run is
  ``records[-1]["round"]`` (see :func:`paired`).
  """
  for r in evaluated(records):
    if r[ACC] >= target:
      return {k: r[k] for k in TO_TARGET_KEYS}
  return None


def paired(treatment: Mapping[str, dict | None],
           control: Mapping[str, dict | None], last_round: int,
           family: int = 1) -> dict[str, Any]:
  """Per-seed ``treatment - control`` of the rounds to a target.

  A run that never reaches the target counts at ``last_round`` (its last
  round: a bound that understates its delay; ``censored`` counts these
  pairs); seeds where neither reaches are left out. The mean, std and 95%
  t-interval (3 or more pairs) are over the remaining pairs;
  ``ci_family`` is the Bonferroni interval for ``family`` targets tested
  together (level ``1 - 0.05 / family``).
  """
  seeds = sorted(set(treatment) & set(control))
  diffs, faster, slower, ties, neither, censored = [], 0, 0, 0, 0, 0
  for s in seeds:
    t, c = treatment[s], control[s]
    if t is None and c is None:
      neither += 1
      continue
    censored += t is None or c is None
    d = ((last_round if t is None else t["round"])
         - (last_round if c is None else c["round"]))
    diffs.append(d)
    faster += d < 0
    slower += d > 0
    ties += d == 0
  out = dict(mean_std(diffs), diffs=diffs, seeds=len(seeds), faster=faster,
             slower=slower, ties=ties, neither=neither, censored=censored,
             ci95=None)
  out["ci95"] = t_interval(diffs)
  out["ci_family"] = t_interval(diffs, level=1 - 0.05 / family)
  return out


def verdict_at(p: Mapping[str, Any]) -> str:
  """``faster``/``slower``/``tie``/``neither reached``/``inconclusive``.

  ``faster`` only if the paired interval lies below 0 and no seed has the
  treatment slower (or not reaching where the control does); ``slower``
  symmetrically; ``neither reached`` if no seed of either reaches the
  target; ``tie`` if every other seed is tied; else ``inconclusive``.
  """
  if p["seeds"] and p["neither"] == p["seeds"]:
    return "neither reached"
  ci = p["ci95"]
  if ci is not None and ci[1] < 0 and p["slower"] == 0:
    return "faster"
  if ci is not None and ci[0] > 0 and p["faster"] == 0:
    return "slower"
  if p["seeds"] and p["ties"] + p["neither"] == p["seeds"]:
    return "tie"
  return "inconclusive"


def paired_final(treatment: Mapping[str, list], control: Mapping[str, list]
                 ) -> dict[str, Any]:
  """Per-seed ``treatment - control`` of the final test accuracy: mean,
  std, 95% t-interval (3 or more pairs) and how many seeds end higher."""
  seeds = sorted(set(treatment) & set(control))
  diffs = [final_accuracy(treatment[s]) - final_accuracy(control[s])
           for s in seeds]
  return dict(mean_std(diffs), diffs=diffs, ci95=t_interval(diffs),
              higher=sum(d > 0 for d in diffs),
              lower=sum(d < 0 for d in diffs))


def verdict(targets: Sequence[Mapping[str, Any]], treatment: str,
            control: str) -> str:
  """One sentence from the per-target verdicts and paired differences."""
  parts, kinds = [], set()
  for t in targets:
    p = t["paired"]
    kinds.add(t["verdict"])
    diff = ("n/a" if p["mean"] is None
            else f"{p['mean']:+.1f} ± {p['std']:.1f} rounds")
    ci = ("" if p["ci95"] is None
          else f", 95% CI [{p['ci95'][0]:+.1f}, {p['ci95'][1]:+.1f}]")
    parts.append(f"{t['fraction']:.0%} of FedAvg's final accuracy "
                 f"({t['accuracy']:.3f}): {t['verdict']} ({diff}{ci}; "
                 f"{p['faster']} faster / {p['ties']} tied / {p['slower']} "
                 f"slower of {p['seeds']} seeds)")
  if kinds == {"faster"}:
    head = f"{treatment} reaches every target faster than {control}"
  elif kinds == {"slower"}:
    head = f"{treatment} reaches every target slower than {control}"
  elif "faster" in kinds and "slower" not in kinds:
    head = (f"{treatment} reaches some targets faster than {control} and "
            "none significantly slower")
  elif "slower" in kinds and "faster" not in kinds:
    head = (f"{treatment} reaches some targets slower than {control} and "
            "none significantly faster")
  elif "faster" in kinds:
    head = (f"{treatment} is faster than {control} at some targets, slower "
            "at others")
  else:
    head = (f"{treatment} is not significantly faster or slower than "
            f"{control} at any target")
  return head + ": " + "; ".join(parts) + "."


def family_verdict(targets: Sequence[Mapping[str, Any]], treatment: str,
                   control: str) -> str:
  """The targets where the Bonferroni interval (all targets tested
  together) lies below or above 0 with no seed the other way."""
  k = len(targets)
  faster = [t for t in targets if t["paired"]["ci_family"] is not None
            and t["paired"]["ci_family"][1] < 0 and t["paired"]["slower"] == 0]
  slower = [t for t in targets if t["paired"]["ci_family"] is not None
            and t["paired"]["ci_family"][0] > 0 and t["paired"]["faster"] == 0]
  def names(ts):
    return ", ".join(f"{t['fraction']:.0%}" for t in ts) or "no target"
  return (f"Corrected for the {k} targets tested (Bonferroni, level "
          f"{1 - 0.05 / k:.4f}): {treatment} is faster than {control} at "
          f"{names(faster)} and slower at {names(slower)}.")


def mechanism_curves(runs: Runs, key: str) -> dict[str, dict[str, list]]:
  """Per method, ``key`` by round: mean and std over seeds."""
  out = {}
  for method, seeds in runs.items():
    series = [[r.get(key, float("nan")) for r in recs]
              for recs in seeds.values()]
    n = min(len(s) for s in series)
    a = np.asarray([s[:n] for s in series], float)
    if not np.isfinite(a).any():
      continue
    out[method] = {"round": list(range(1, n + 1)),
                   "mean": np.nanmean(a, 0).tolist(),
                   "std": np.nanstd(a, 0).tolist()}
  return out


def sweep_table(runs: Runs, targets: Sequence[Mapping[str, Any]],
                sweep: Mapping[str, float]) -> list[dict[str, Any]]:
  """Per swept method (ascending alpha): final accuracy and rounds to each
  target (mean ± std over the seeds that reach it, and how many do)."""
  rows = []
  for method, alpha in sorted(sweep.items(), key=lambda kv: kv[1]):
    seeds = runs[method]
    row = {"method": method, "alpha": alpha, "seeds": len(seeds),
           "final_accuracy": mean_std([final_accuracy(r)
                                       for r in seeds.values()]),
           "rounds": {}}
    for t in targets:
      hit = [first_reach(r, t["accuracy"]) for r in seeds.values()]
      hit = [h["round"] for h in hit if h is not None]
      row["rounds"][f"{t['fraction']:g}"] = dict(mean_std(hit),
                                                 reached=len(hit))
    rows.append(row)
  return rows


def analyse(runs: Runs, fractions: Sequence[float], baseline: str,
            treatment: str, control: str,
            sweep: Mapping[str, float] | None = None) -> dict[str, Any]:
  """Every number of the report (see the module docstring)."""
  for m in (baseline, treatment, control, *(sweep or ())):
    if m not in runs:
      raise ValueError(f"method {m!r} not found; have {sorted(runs)}")
  base_final = mean_std([final_accuracy(r) for r in runs[baseline].values()])
  methods = {}
  for method, seeds in sorted(runs.items()):
    finals = [final_accuracy(r) for r in seeds.values()]
    methods[method] = {"seeds": sorted(seeds), "final_accuracy":
                       mean_std(finals),
                       "best_accuracy": mean_std(
                           [max(r[ACC] for r in evaluated(recs))
                            for recs in seeds.values()]),
                       "to_target": {}}
  targets = []
  for frac in fractions:
    acc = frac * base_final["mean"]
    reach = {m: {s: first_reach(recs, acc) for s, recs in seeds.items()}
             for m, seeds in runs.items()}
    for m, by_seed in reach.items():
      hit = [v for v in by_seed.values() if v is not None]
      methods[m]["to_target"][f"{frac:g}"] = {
          k: mean_std([v[k] for v in hit]) for k in TO_TARGET_KEYS}
    last = max(recs[-1]["round"] for seeds in runs.values()
               for recs in seeds.values())
    p = paired(reach[treatment], reach[control], last, len(fractions))
    targets.append({"fraction": frac, "accuracy": acc, "paired": p,
                    "verdict": verdict_at(p)})
  rounds = [r["round"] for r in evaluated(next(iter(runs[baseline].values())))]
  return {"baseline": baseline, "treatment": treatment, "control": control,
          "eval_rounds": rounds[:3],
          "baseline_final_accuracy": base_final, "methods": methods,
          "targets": targets,
          "final_paired": paired_final(runs[treatment], runs[control]),
          "verdict": verdict(targets, treatment, control)
                     + " " + family_verdict(targets, treatment, control),
          "mechanism": {k: mechanism_curves(runs, k) for k in MECHANISM},
          "sweep": sweep_table(runs, targets, sweep) if sweep else []}


def _fmt(s: Mapping[str, Any], scale: float = 1.0, digits: int = 3) -> str:
  if s["mean"] is None:
    return "not reached"
  return f"{s['mean'] / scale:.{digits}g} ± {s['std'] / scale:.{digits}g}"


def markdown(result: Mapping[str, Any], seeds_total: Mapping[str, int]) -> str:
  """The report's markdown (tables, paired differences, verdict)."""
  lines = [f"FedAvg ({result['baseline']}) final test accuracy "
           f"{_fmt(result['baseline_final_accuracy'])} "
           f"(mean ± std over {result['baseline_final_accuracy']['n']} "
           "seeds, std ddof=1). MB = 10^6 bytes, all clients summed. "
           f"Test accuracy at rounds {result['eval_rounds']}...: "
           "rounds to target are on that grid.", ""]
  head = "| method | seeds | final acc | best acc |"
  rule = "| --- | --- | --- | --- |"
  for t in result["targets"]:
    f = f"{t['fraction']:.0%} ({t['accuracy']:.3f})"
    head += f" rounds to {f} | uplink MB to {f} |"
    rule += " --- | --- |"
  lines += [head, rule]
  for m, d in result["methods"].items():
    row = (f"| {m} | {len(d['seeds'])} | {_fmt(d['final_accuracy'])} | "
           f"{_fmt(d['best_accuracy'])} |")
    for t in result["targets"]:
      tt = d["to_target"][f"{t['fraction']:g}"]
      n = tt["round"]["n"]
      reached = "" if n == seeds_total[m] else f" ({n}/{seeds_total[m]} seeds)"
      row += (f" {_fmt(tt['round'])}{reached} |"
              f" {_fmt(tt['uplink_bytes'], 1e6)}{reached} |")
    lines.append(row)
  lines += ["", f"Paired per-seed difference in rounds to target, "
            f"{result['treatment']} minus {result['control']} (negative: "
            f"{result['treatment']} faster):", "",
            "| target | per-seed diffs | mean ± std | 95% t-interval | "
            f"Bonferroni interval ({len(result['targets'])} targets) | "
            "faster / tied / slower / neither reached | not reached by one "
            "(counted at the last round) | rule |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for t in result["targets"]:
    p = t["paired"]
    ci, ci_family = ("n < 3" if c is None else f"[{c[0]:+.1f}, {c[1]:+.1f}]"
                     for c in (p["ci95"], p["ci_family"]))
    lines.append(
        f"| {t['fraction']:.0%} ({t['accuracy']:.3f}) | "
        f"{', '.join(f'{d:+g}' for d in p['diffs']) or '-'} | "
        f"{_fmt(p, digits=3)} | {ci} | {ci_family} | "
        f"{p['faster']} / {p['ties']} / "
        f"{p['slower']} / {p['neither']} | {p['censored']} | "
        f"{t['verdict']} |")
  f = result["final_paired"]
  ci = ("n < 3" if f["ci95"] is None
        else f"[{f['ci95'][0]:+.4f}, {f['ci95'][1]:+.4f}]")
  lines += ["", f"Final test accuracy, {result['treatment']} minus "
            f"{result['control']} per seed: "
            f"{', '.join(f'{d:+.4f}' for d in f['diffs'])}; mean "
            f"{_fmt(f, digits=3)}, 95% t-interval {ci}; higher on "
            f"{f['higher']}, lower on {f['lower']} of {len(f['diffs'])} "
            "seeds."]
  lines += ["", "Mechanism (mean over seeds; rounds 1-10 and the last 10): "
            "residual norm, gradient mismatch ||g(w) - g(w + e)||^2 on the "
            "held-out probe batch, train loss.", "",
            "| method | " + " | ".join(f"{k} early | {k} late"
                                        for k in MECHANISM) + " |",
            "| --- |" + " --- | --- |" * len(MECHANISM)]
  for m in result["methods"]:
    row = f"| {m} |"
    for k in MECHANISM:
      c = result["mechanism"][k].get(m)
      if c is None:
        row += " - | - |"
        continue
      mean = np.asarray(c["mean"])
      row += f" {np.nanmean(mean[:10]):.3g} | {np.nanmean(mean[-10:]):.3g} |"
    lines.append(row)
  if result["sweep"]:
    fracs = list(result["sweep"][0]["rounds"])
    lines += ["", "Alpha sweep: final accuracy and rounds to target "
              "(mean ± std over the seeds that reach it; reached/seeds).", "",
              "| alpha | method | final acc | "
              + " | ".join(f"rounds to {float(f):.0%}" for f in fracs) + " |",
              "| --- " * (3 + len(fracs)) + "|"]
    for row in result["sweep"]:
      cells = [f"{_fmt(row['rounds'][f])} ({row['rounds'][f]['reached']}/"
               f"{row['seeds']})" for f in fracs]
      lines.append(f"| {row['alpha']:g} | {row['method']} | "
                   f"{_fmt(row['final_accuracy'])} | " + " | ".join(cells)
                   + " |")
  lines += ["", "**Verdict.** " + result["verdict"]]
  return "\n".join(lines) + "\n"


def plot(runs: Runs, result: Mapping[str, Any], out: str) -> list[str]:
  """Accuracy vs rounds and uplink bytes (mean ± std bands), mechanism."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  files = []
  for x_key, name, logx in (("round", "accuracy_vs_round.png", False),
                            ("uplink_bytes", "accuracy_vs_uplink_bytes.png",
                             True)):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, seeds in sorted(runs.items()):
      curves = [evaluated(r) for r in seeds.values()]
      n = min(len(c) for c in curves)
      x = np.mean([[r[x_key] for r in c[:n]] for c in curves], 0)
      y = np.asarray([[r[ACC] for r in c[:n]] for c in curves])
      line, = ax.plot(x, y.mean(0), label=f"{method} ({len(curves)})")
      ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(),
                      alpha=0.2)
    for t in result["targets"]:
      ax.axhline(t["accuracy"], color="gray", lw=0.5, ls=":")
    if logx:
      ax.set_xscale("log")
    ax.set_xlabel(x_key)
    ax.set_ylabel(ACC)
    ax.set_title(f"{ACC} vs {x_key}: mean over seeds, band = min..max")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    files.append(name)
  fig, axes = plt.subplots(1, len(MECHANISM), figsize=(15, 4))
  for ax, key in zip(axes, MECHANISM):
    for method, c in sorted(result["mechanism"][key].items()):
      mean, std = np.asarray(c["mean"]), np.asarray(c["std"])
      line, = ax.plot(c["round"], mean, label=method, lw=1)
      ax.fill_between(c["round"], mean - std, mean + std,
                      color=line.get_color(), alpha=0.15)
    ax.set_xlabel("round")
    ax.set_title(key + (" (log; 0 not shown)" if key != "train_loss"
                        else ""))
    if key != "train_loss":  # from the 1st percentile of positive values
      ax.set_yscale("log")
      values = np.concatenate([np.asarray(c["mean"]) for c in
                               result["mechanism"][key].values()] or [[1.0]])
      values = values[np.isfinite(values) & (values > 0)]
      if values.size:
        ax.set_ylim(bottom=np.percentile(values, 1) / 2)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "mechanism_vs_round.png"), dpi=110)
  plt.close(fig)
  files.append("mechanism_vs_round.png")
  if result["sweep"]:
    files.append(_plot_sweep(plt, result["sweep"], out))
  return files


def _plot_sweep(plt, rows: Sequence[Mapping[str, Any]], out: str) -> str:
  """Final accuracy and rounds to each target against alpha."""
  alphas = [r["alpha"] for r in rows]
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  acc = [r["final_accuracy"] for r in rows]
  left.errorbar(alphas, [a["mean"] for a in acc], [a["std"] for a in acc],
                marker="o", capsize=3)
  left.set_xlabel("alpha")
  left.set_ylabel("final " + ACC)
  left.set_title("final accuracy (mean ± std over seeds)")
  for frac in rows[0]["rounds"]:
    pts = [(a, r["rounds"][frac]) for a, r in zip(alphas, rows)
           if r["rounds"][frac]["mean"] is not None]
    right.errorbar([a for a, _ in pts], [p["mean"] for _, p in pts],
                   [p["std"] for _, p in pts], marker="o", capsize=3,
                   label=f"{float(frac):.0%} of FedAvg")
  right.set_xlabel("alpha")
  right.set_ylabel("rounds to target")
  right.set_title("rounds to target (seeds that reach it)")
  right.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "alpha_sweep.png"), dpi=110)
  plt.close(fig)
  return "alpha_sweep.png"


def write_report(roots: Sequence[str], out: str,
                 fractions: Sequence[float] = (0.5, 0.6, 0.7),
                 baseline: str = "fedavg", treatment: str = "sapef",
                 control: str = "ef",
                 sweep: Mapping[str, float] | None = None) -> dict[str, Any]:
  """Reads the runs, writes ``report.md``/``report.json``/plots to ``out``."""
  runs, left_out = split_incomplete(load_runs(roots))
  result = analyse(runs, fractions, baseline, treatment, control, sweep)
  result["incomplete_runs_left_out"] = left_out
  os.makedirs(out, exist_ok=True)
  text = markdown(result, {m: len(s) for m, s in runs.items()})
  if left_out:
    text += "\nIncomplete runs left out: " + ", ".join(left_out) + "\n"
  result["plots"] = plot(runs, result, out)
  result["roots"] = list(roots)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(text + "\nPlots: " + ", ".join(result["plots"]) + "\n")
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(result, f, indent=1)
  return result


FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined at run time: report modules share names)."""
  flags.DEFINE_list("roots", None, "Directories of <seed>/<method> runs.")
  flags.DEFINE_string("out", None, "Output directory.")
  flags.DEFINE_list("fractions", ["0.5", "0.6", "0.7"],
                    "Targets as fractions of FedAvg's final accuracy.")
  flags.DEFINE_string("baseline", "fedavg", "Method defining the targets.")
  flags.DEFINE_string("treatment", "sapef", "Paired difference: this ...")
  flags.DEFINE_string("control", "ef", "... minus this.")
  flags.DEFINE_list("sweep", [], "Alpha sweep: method:alpha pairs, e.g. "
                    "ef:0,sapef_a025:0.25,sapef:0.85,saef:1.")


def parse_sweep(items: Sequence[str]) -> dict[str, float]:
  """``["ef:0", "saef:1"]`` -> ``{"ef": 0.0, "saef": 1.0}``."""
  sweep = {}
  for item in items:
    method, sep, alpha = item.rpartition(":")
    try:
      sweep[method] = float(alpha)
    except ValueError:
      sep = ""
    if not sep or not method:
      raise app.UsageError(f"--sweep entries are method:alpha, got {item!r}")
  return sweep


def main(argv):
  del argv
  if not FLAGS.roots or not FLAGS.out:
    raise app.UsageError("--roots and --out are required")
  fractions = [float(f) for f in FLAGS.fractions]
  if not all(0 < f <= 1 for f in fractions):
    raise app.UsageError(f"--fractions must be in (0, 1], got {fractions}")
  write_report(FLAGS.roots, FLAGS.out, fractions, FLAGS.baseline,
               FLAGS.treatment, FLAGS.control, parse_sweep(FLAGS.sweep))
  with open(os.path.join(FLAGS.out, "report.md")) as f:
    print(f.read())


if __name__ == "__main__":
  define_flags()
  app.run(main)
