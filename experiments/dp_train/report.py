r"""Multi-seed report of Sahu et al.'s claim, from the runs' metrics.

    python -m experiments.dp_train.report --root=/tmp/sahu --out=/tmp/sahu/report

``--root`` holds ``ratio=<r>/<seed>/<method>/`` runs of
``configs/sahu_mnist.py`` (``run_sahu.sh`` makes them). For every ratio: per
method the final test accuracy, the elements sent and their ratio to
top-k's (the volume match, per seed), the total error ``sum_t ||e_t||^2``
(mean ± std over seeds); the paired per-seed difference of each threshold
method minus top-k in final accuracy (mean, 95% t-interval) and in total
error; the calibrated lambdas. Plots per ratio: test accuracy against
cumulative bytes (mean over seeds, band = min..max) and elements sent per
step over time (the spend). The verdict on the claim ("a constant threshold
reaches equal or better accuracy than top-k at the same total volume") is
produced by :func:`verdict`, never typed. Writes ``report.md``,
``report.json`` and the PNGs into ``--out``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np

from experiments import reporting
from experiments.dp_train import calibrated

ACC = reporting.ACC
TOP_K = "ef_top_k_global"
CONSTANT = "ef_threshold_calibrated"
THRESHOLDS = (CONSTANT, "ef_budgeted_calibrated")


def paired_difference(a: Mapping[str, float], b: Mapping[str, float]
                      ) -> dict[str, Any]:
  """Per-seed ``a - b``: mean, std, 95% t-interval (3+ seeds), signs."""
  seeds = sorted(set(a) & set(b))
  diffs = [a[s] - b[s] for s in seeds]
  return dict(reporting.mean_std(diffs), diffs=diffs,
              ci95=reporting.t_interval(diffs),
              above=sum(d > 0 for d in diffs),
              below=sum(d < 0 for d in diffs))


def verdict(ratio: float, acc_diff: Mapping[str, Any],
            volume_ratios: Sequence[float], rtol: float = 0.02) -> str:
  """One sentence on the claim at one ratio, from the paired accuracies."""
  matched = all(abs(v - 1) <= rtol for v in volume_ratios)
  ci = acc_diff["ci95"]
  if ci is None:
    return (f"ratio {ratio:g}: too few seeds ({len(acc_diff['diffs'])}) "
            "for a verdict.")
  detail = (f"constant minus top-k final accuracy {acc_diff['mean']:+.4f} "
            f"(95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}], {acc_diff['above']} of "
            f"{len(acc_diff['diffs'])} seeds above)")
  if ci[0] > 0:
    head = "the calibrated constant threshold beats top-k"
  elif ci[1] < 0:
    head = "the calibrated constant threshold is worse than top-k"
  else:
    head = ("the calibrated constant threshold and top-k are not "
            "distinguishable")
  volume = ("volumes matched within {:.0%}".format(rtol) if matched else
            "volumes NOT matched within {:.0%} (max deviation {:.1%})".format(
                rtol, max(abs(v - 1) for v in volume_ratios)))
  return f"ratio {ratio:g}: {head} at the same total volume ({volume}): {detail}."


def analyse_ratio(runs) -> dict[str, Any]:
  """The table rows, paired differences and verdict of one ratio."""
  last = {m: {s: r[-1] for s, r in seeds.items()} for m, seeds in runs.items()}
  final_acc = {m: {s: reporting.final_accuracy(r) for s, r in seeds.items()}
               for m, seeds in runs.items()}
  top_k_sent = {s: rec["elements_sent"] for s, rec in last.get(
      TOP_K, {}).items()}
  rows = {}
  for m in sorted(runs):
    vs_top_k = [last[m][s]["elements_sent"] / top_k_sent[s]
                for s in last[m] if s in top_k_sent]
    rows[m] = {
        "seeds": sorted(runs[m]),
        "final_acc": reporting.mean_std(list(final_acc[m].values())),
        "elements_sent": reporting.mean_std(
            [r["elements_sent"] for r in last[m].values()]),
        "bytes_sent": reporting.mean_std(
            [r["bytes_sent"] for r in last[m].values()]),
        "volume_vs_top_k": vs_top_k,
        "total_error": reporting.mean_std(
            [r["total_error"] for r in last[m].values()]),
    }
  paired = {}
  for m in THRESHOLDS:
    if m in runs and TOP_K in runs:
      errors = {s: r["total_error"] for s, r in last[m].items()}
      top_errors = {s: r["total_error"] for s, r in last[TOP_K].items()}
      paired[m] = {"final_acc": paired_difference(final_acc[m],
                                                  final_acc[TOP_K]),
                   "total_error_ratio": reporting.mean_std(
                       [errors[s] / top_errors[s] for s in errors
                        if s in top_errors and top_errors[s] > 0])}
  return {"rows": rows, "paired_vs_top_k": paired}


def load_ratios(root: str) -> dict[float, dict]:
  """``{ratio: {method: {seed: records}}}`` of ``root/ratio=<r>/``."""
  out = {}
  for name in sorted(os.listdir(root)):
    if name.startswith("ratio="):
      out[float(name.split("=", 1)[1])] = reporting.load_runs(
          [os.path.join(root, name)])
  if not out:
    raise FileNotFoundError(f"--root: {root} has no ratio=<r>/ directory")
  return out


def calibrations(root: str, ratio: float) -> dict[str, Any]:
  """Seed -> the calibrated method's ``calibration.json``."""
  out = {}
  base = os.path.join(root, f"ratio={ratio:g}")
  for seed in sorted(os.listdir(base)):
    path = os.path.join(base, seed, CONSTANT, "calibration.json")
    if os.path.isfile(path):
      with open(path) as f:
        out[seed] = json.load(f)
  return out


def _fmt(s: Mapping[str, Any], digits: int = 4, scale: float = 1.0) -> str:
  if s["mean"] is None:
    return "-"
  return (f"{s['mean'] * scale:.{digits}g} ± {s['std'] * scale:.2g}"
          if s["n"] > 1 else f"{s['mean'] * scale:.{digits}g}")


def markdown(ratio: float, result: Mapping[str, Any]) -> str:
  lines = [f"## Ratio {ratio:g}", "",
           "| method | seeds | final test acc | elements sent | volume vs "
           "top-k (per seed) | total error |",
           "|---|---:|---:|---:|---|---:|"]
  for m, r in result["rows"].items():
    volume = ", ".join(f"{v:.3f}" for v in r["volume_vs_top_k"]) or "-"
    lines.append(f"| {m} | {len(r['seeds'])} | {_fmt(r['final_acc'])} | "
                 f"{_fmt(r['elements_sent'], 4)} | {volume} | "
                 f"{_fmt(r['total_error'], 3)} |")
  lines += ["", "| method minus top-k | final acc (mean ± std) | 95% CI | "
            "seeds above / below | total error ratio |",
            "|---|---:|---|---:|---:|"]
  for m, p in result["paired_vs_top_k"].items():
    a = p["final_acc"]
    ci = ("-" if a["ci95"] is None
          else f"[{a['ci95'][0]:+.4f}, {a['ci95'][1]:+.4f}]")
    lines.append(f"| {m} | {a['mean']:+.4f} ± {a['std']:.4f} | {ci} | "
                 f"{a['above']} / {a['below']} | "
                 f"{_fmt(p['total_error_ratio'], 3)} |")
  cal = result["calibrations"]
  if cal:
    lines += ["", "Calibrated lambda per seed: " + ", ".join(
        f"{s}: {c['threshold']:.4g} ({len(c['pilots'])} pilots, volume "
        f"{c['volume_vs_target']:.3f} of target)" for s, c in cal.items())]
  lines += ["", "**Verdict.** " + result["verdict"], ""]
  return "\n".join(lines)


def plot(ratio: float, runs, out: str) -> list[str]:
  """Accuracy vs cumulative bytes and the spend over time, seed bands."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (acc_ax, spend_ax) = plt.subplots(1, 2, figsize=(13, 4.5))
  for method, seeds in sorted(runs.items()):
    curves = [reporting.evaluated(r) for r in seeds.values()]
    n = min(len(c) for c in curves)
    x = np.mean([[r["bytes_sent"] for r in c[:n]] for c in curves], 0)
    y = np.asarray([[r[ACC] for r in c[:n]] for c in curves])
    line, = acc_ax.plot(x, y.mean(0), label=f"{method} ({len(curves)})")
    acc_ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(),
                        alpha=0.2)
    if method == "dense":
      continue
    spends = [calibrated.spend_per_step(r) for r in seeds.values()]
    n = min(len(s) for s in spends)
    steps = [r["step"] for r in next(iter(seeds.values()))[:n]]
    s = np.asarray([sp[:n] for sp in spends])
    line, = spend_ax.plot(steps, s.mean(0), label=method)
    spend_ax.fill_between(steps, s.min(0), s.max(0),
                          color=line.get_color(), alpha=0.2)
  acc_ax.set_xscale("log")
  acc_ax.set_xlabel("bytes sent (all devices, cumulative)")
  acc_ax.set_ylabel(ACC)
  acc_ax.set_title(f"ratio {ratio:g}: accuracy vs bytes (band = min..max)")
  acc_ax.legend(fontsize=7)
  spend_ax.set_yscale("log")
  spend_ax.set_xlabel("step")
  spend_ax.set_ylabel("elements sent per step (all devices)")
  spend_ax.set_title("spend over time")
  spend_ax.legend(fontsize=7)
  fig.tight_layout()
  name = f"ratio={ratio:g}.png"
  fig.savefig(os.path.join(out, name), dpi=110)
  plt.close(fig)
  return [name]


def write_report(root: str, out: str) -> dict[str, Any]:
  """Reads every ratio's runs; writes ``report.md``/``.json`` and plots."""
  os.makedirs(out, exist_ok=True)
  results, text, plots = {}, ["# Sahu et al.: constant threshold vs top-k "
                              "at equal total volume", ""], []
  for ratio, all_runs in load_ratios(root).items():
    runs, left_out = reporting.split_incomplete(
        {m: {s: [dict(r, round=r["step"]) for r in recs]
             for s, recs in seeds.items()} for m, seeds in all_runs.items()})
    result = analyse_ratio(runs)
    result["calibrations"] = calibrations(root, ratio)
    result["incomplete_runs_left_out"] = left_out
    p = result["paired_vs_top_k"].get(CONSTANT)
    result["verdict"] = (
        verdict(ratio, p["final_acc"], result["rows"][CONSTANT][
            "volume_vs_top_k"]) if p else
        f"ratio {ratio:g}: no complete {CONSTANT} and {TOP_K} runs yet.")
    text.append(markdown(ratio, result))
    if left_out:
      text.append("Incomplete runs left out: " + ", ".join(left_out) + "\n")
    plots += plot(ratio, runs, out)
    results[f"{ratio:g}"] = result
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write("\n".join(text) + "\nPlots: " + ", ".join(plots) + "\n")
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump({"root": root, "ratios": results, "plots": plots}, f, indent=1)
  return results


FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined at run time: report modules share names)."""
  flags.DEFINE_string("root", None, "Directory of ratio=<r>/<seed>/<method>.")
  flags.DEFINE_string("out", None, "Output directory.")


def main(argv):
  del argv
  if not FLAGS.root or not FLAGS.out:
    raise app.UsageError("--root and --out are required")
  write_report(FLAGS.root, FLAGS.out)
  with open(os.path.join(FLAGS.out, "report.md")) as f:
    print(f.read())


if __name__ == "__main__":
  define_flags()
  app.run(main)
