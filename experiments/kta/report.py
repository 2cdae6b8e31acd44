r"""Multi-seed report of a KTA experiment, from the runs' metrics.

    python -m experiments.kta.report --workdirs=/tmp/kta_runs/cifar10 \
        --out=/tmp/kta_runs/cifar10/report

Each workdir is one of ``experiments.kta.main``
(``<workdir>/<method>/seed<s>/metrics.jsonl``, with ``search.json`` when the
method's knobs were searched); several workdirs (e.g. one per seed) are
merged. Per method, over seeds (mean ± std, ddof=1): the final and best
personal accuracy (each client's model on its own held-out split), the
final global accuracy (the same models on the global test set), total bytes
(uplink + downlink, all clients), their ratio to FedAvg's per round, and the
market's last-round distance of the targets from the FedMD mean and weight
entropy. FedAvg/FedProx runs that logged ``ft_*`` metrics (the global model
fine-tuned by each client) give a second row, ``<method>+ft``.

The verdicts compare ``--treatment`` (KTA) with local-only, with the best of
FedAvg/FedProx (fine-tuned or not) and with FedMD on the final personal
accuracy, paired by seed: "beats" only if it is higher on every seed,
"loses" if lower on every seed, else "inconclusive", and "too few seeds"
below 3 (:func:`verdict`).
Writes ``report.md``, ``report.json`` and accuracy-vs-cumulative-bytes plots
(mean over seeds, band ± std) into ``--out``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np

from sparsejax import training

ACCURACIES = ("personal_accuracy", "global_accuracy")
FINETUNED = "+ft"  # suffix of the fine-tuned rows
MIN_SEEDS = 3  # paired seeds a verdict other than "too few seeds" needs

Runs = Mapping[str, Mapping[int, Sequence[dict]]]  # method -> seed -> records


def load_runs(workdirs: Sequence[str]) -> tuple[dict, dict]:
  """``({method: {seed: records}}, {method: {seed: chosen knobs}})``.

  Raises:
    FileNotFoundError: a workdir is missing or holds no run.
    ValueError: two workdirs hold the same method and seed.
  """
  runs: dict[str, dict[int, list]] = {}
  knobs: dict[str, dict[int, dict]] = {}
  for workdir in workdirs:
    if not os.path.isdir(workdir):
      raise FileNotFoundError(f"--workdirs: {workdir} is not a directory")
    found = False
    for method in sorted(os.listdir(workdir)):
      mdir = os.path.join(workdir, method)
      if not os.path.isdir(mdir):
        continue
      for name in sorted(os.listdir(mdir)):
        match = re.fullmatch(r"seed(\d+)", name)
        path = os.path.join(mdir, name)
        if not match or not os.path.isfile(os.path.join(path,
                                                        "metrics.jsonl")):
          continue
        seed = int(match.group(1))
        if seed in runs.get(method, {}):
          raise ValueError(f"method {method!r} seed {seed} is in two "
                           f"workdirs (the second: {workdir})")
        runs.setdefault(method, {})[seed] = training.read_metrics(path)
        search = os.path.join(path, "search.json")
        if os.path.isfile(search):
          with open(search) as f:
            knobs.setdefault(method, {})[seed] = json.load(f)["chosen"]
        found = True
    if not found:
      raise FileNotFoundError(
          f"--workdirs: {workdir} holds no <method>/seed<s>/metrics.jsonl")
  return runs, knobs


def with_finetuned(runs: Runs) -> dict[str, dict[int, list]]:
  """``runs`` plus ``<method>+ft`` for runs that logged ``ft_*`` accuracies.

  The fine-tuned records are the method's with ``ft_<acc>`` as ``<acc>``
  (same rounds and bytes).
  """
  out = {m: dict(s) for m, s in runs.items()}
  for method, seeds in runs.items():
    if all(any(f"ft_{ACCURACIES[0]}" in r for r in recs)
           for recs in seeds.values()):
      out[method + FINETUNED] = {
          seed: [{**r, **{a: r[f"ft_{a}"] for a in ACCURACIES
                          if f"ft_{a}" in r}} for r in recs]
          for seed, recs in seeds.items()}
  return out


def evaluated(records: Sequence[dict]) -> list[dict]:
  """The records with every accuracy (the evaluation rounds)."""
  return [r for r in records if all(r.get(a) is not None for a in ACCURACIES)]


def mean_std(values: Sequence[float]) -> dict[str, Any]:
  """Mean, std (ddof=1; 0 for one value) and count; ``None`` if empty."""
  v = np.asarray([x for x in values if x is not None], float)
  if v.size == 0:
    return {"mean": None, "std": None, "n": 0}
  return {"mean": float(v.mean()),
          "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
          "n": int(v.size)}


def summarize_method(seeds: Mapping[int, Sequence[dict]]) -> dict[str, Any]:
  """One method's row: final/best accuracies, bytes, market metrics."""
  ev = {s: evaluated(r) for s, r in seeds.items()}
  empty = [s for s, r in ev.items() if not r]
  if empty:
    raise ValueError(f"seeds {empty} have no evaluated round")
  last = {s: r[-1] for s, r in ev.items()}
  row = {"seeds": sorted(seeds),
         "rounds": sorted({r["round"] for r in last.values()})}
  for a in ACCURACIES:
    row[f"final_{a}"] = mean_std([r[a] for r in last.values()])
    row[f"per_seed_{a}"] = {s: r[a] for s, r in last.items()}
  row["best_personal_accuracy"] = mean_std(
      [max(x["personal_accuracy"] for x in r) for r in ev.values()])
  for k in ("total_bytes", "uplink_bytes", "downlink_bytes"):
    row[k] = mean_std([r.get(k) for r in last.values()])
  row["bytes_per_round"] = mean_std([r["total_bytes"] / r["round"]
                                     for r in last.values()])
  for k in ("fedmd_distance", "weight_entropy"):  # the market's last round
    row[k] = mean_std([recs[-1].get(k) for recs in seeds.values()])
  return row


def verdict(name: str, treatment: Mapping[int, float],
            others: Mapping[str, Mapping[int, float]]) -> dict[str, Any]:
  """Paired per-seed comparison of final personal accuracy with ``others``.

  The control is, per claim, the other method with the highest mean (e.g.
  the best of FedAvg, FedProx and their fine-tuned rows). "beats" if the
  treatment is higher on every common seed, "loses" if lower on every one,
  else "inconclusive"; with fewer than ``MIN_SEEDS`` common seeds "has too
  few seeds against" whatever the signs.
  """
  best = max(others, key=lambda m: np.mean(list(others[m].values())))
  seeds = sorted(set(treatment) & set(others[best]))
  diffs = [treatment[s] - others[best][s] for s in seeds]
  if len(diffs) < MIN_SEEDS:
    word = "has too few seeds against"
  elif all(d > 0 for d in diffs):
    word = "beats"
  elif all(d < 0 for d in diffs):
    word = "loses to"
  else:
    word = "is inconclusive against"
  stats = mean_std(diffs)
  diff = ("no common seed" if stats["mean"] is None else
          f"{stats['mean']:+.4f} ± {stats['std']:.4f} over {len(diffs)} "
          "seeds")
  return {"claim": name, "control": best, "diffs": diffs, "word": word,
          "sentence": f"{name}: the treatment {word} {best} on final personal "
                      f"accuracy (paired difference {diff})."}


def analyse(runs: Runs, baseline: str = "fedavg",
            treatment: str = "kta") -> dict[str, Any]:
  """Every number of the report (see the module docstring)."""
  runs = with_finetuned(runs)
  methods = {m: summarize_method(s) for m, s in sorted(runs.items())}
  base = methods.get(baseline)
  for row in methods.values():
    row["bytes_vs_baseline"] = (
        None if base is None or not base["bytes_per_round"]["mean"]
        else row["bytes_per_round"]["mean"] / base["bytes_per_round"]["mean"])
  verdicts = []
  if treatment in methods:
    acc = {m: r["per_seed_personal_accuracy"] for m, r in methods.items()}
    claims = (("beats local-only", ("local",)),
              ("beats FedAvg/FedProx", tuple(
                  m for m in acc if m.split("+")[0] in ("fedavg", "fedprox"))),
              ("improves over FedMD", ("fedmd",)))
    for name, controls in claims:
      present = {m: acc[m] for m in controls if m in acc}
      if present:
        verdicts.append(verdict(name, acc[treatment], present))
  return {"baseline": baseline, "treatment": treatment, "methods": methods,
          "verdicts": verdicts}


def _fmt(s: Mapping[str, Any], fmt=".4f") -> str:
  if s["mean"] is None:
    return "-"
  return f"{s['mean']:{fmt}} ± {s['std']:{fmt}}"


def _ratio(r: float | None) -> str:
  if r is None:
    return "-"
  if r == 0:
    return "0"
  return f"1/{1 / r:.0f}" if r < 1 else f"{r:.2f}x"


def markdown(result: Mapping[str, Any], knobs: Mapping[str, Mapping]) -> str:
  """The report's markdown: the table, chosen knobs, verdicts."""
  lines = [
      "Mean ± std over seeds (ddof=1). personal: each client's model on its "
      "own held-out split; global: the same models on the global test set "
      "(FedAvg/FedProx: the global model; `+ft`: fine-tuned by each client). "
      "Bytes: uplink + downlink, all clients; the ratio to "
      f"{result['baseline']} is per round. TV from FedMD and weight entropy: "
      "the market's last round.", "",
      "| method | seeds | rounds | final personal acc | best personal acc | "
      "final global acc | total bytes | bytes vs "
      f"{result['baseline']} | TV from FedMD | weight entropy |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for m, r in result["methods"].items():
    total = r["total_bytes"]["mean"]
    lines.append(
        f"| {m} | {len(r['seeds'])} | "
        f"{'-'.join(str(x) for x in r['rounds'])} | "
        f"{_fmt(r['final_personal_accuracy'])} | "
        f"{_fmt(r['best_personal_accuracy'])} | "
        f"{_fmt(r['final_global_accuracy'])} | "
        f"{'-' if total is None else training.format_bytes(total)} | "
        f"{_ratio(r['bytes_vs_baseline'])} | {_fmt(r['fedmd_distance'])} | "
        f"{_fmt(r['weight_entropy'], '.3f')} |")
  if knobs:
    lines += ["", "Knobs chosen on the validation split, per seed:", ""]
    lines += [f"- {m}: " + "; ".join(f"seed {s}: {k}"
                                     for s, k in sorted(v.items()))
              for m, v in sorted(knobs.items())]
  if result["verdicts"]:
    lines += ["", f"Verdicts ({result['treatment']}):", ""]
    lines += [f"- {v['sentence']}" for v in result["verdicts"]]
  return "\n".join(lines) + "\n"


def plot(runs: Runs, out: str) -> list[str]:
  """Accuracy vs cumulative bytes per method: mean over seeds, band ± std.

  Methods that send nothing (local-only) are a horizontal line at their
  final mean accuracy.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = with_finetuned(runs)
  files = []
  for acc in ACCURACIES:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, seeds in sorted(runs.items()):
      curves = [evaluated(r) for r in seeds.values()]
      n = min(len(c) for c in curves)  # runs in progress: common evaluations
      x = np.mean([[r["total_bytes"] for r in c[:n]] for c in curves], 0)
      y = np.asarray([[r[acc] for r in c[:n]] for c in curves])
      mean, std = y.mean(0), (y.std(0, ddof=1) if len(y) > 1
                              else np.zeros(n))
      label = f"{method} ({len(curves)} seeds)"
      if not np.any(x > 0):
        ax.axhline(mean[-1], ls=":", color="gray", label=label + ", 0 bytes")
        continue
      line, = ax.plot(x, mean, marker="o", markersize=3, label=label)
      ax.fill_between(x, mean - std, mean + std, color=line.get_color(),
                      alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative bytes, uplink + downlink (log)")
    ax.set_ylabel(acc)
    ax.set_title(f"{acc} vs bytes: mean over seeds, band ± std")
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"{acc}_vs_total_bytes.png"
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    files.append(name)
  return files


def write_report(workdirs: Sequence[str], out: str, baseline: str = "fedavg",
                 treatment: str = "kta") -> dict[str, Any]:
  """Reads the runs, writes ``report.md``/``report.json``/plots to ``out``."""
  runs, knobs = load_runs(workdirs)
  result = analyse(runs, baseline, treatment)
  os.makedirs(out, exist_ok=True)
  result["plots"] = plot(runs, out)
  result["knobs"] = knobs
  result["workdirs"] = list(workdirs)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(markdown(result, knobs) + "\nPlots: "
            + ", ".join(result["plots"]) + "\n")
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(result, f, indent=1)
  return result


FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Workdirs of experiments.kta.main.")
flags.DEFINE_string("out", None, "Output directory.")
flags.DEFINE_string("baseline", "fedavg", "The bytes ratio's reference.")
flags.DEFINE_string("treatment", "kta", "The method of the verdicts.")


def main(argv):
  del argv
  if not FLAGS.workdirs or not FLAGS.out:
    raise app.UsageError("--workdirs and --out are required")
  write_report(FLAGS.workdirs, FLAGS.out, FLAGS.baseline, FLAGS.treatment)
  with open(os.path.join(FLAGS.out, "report.md")) as f:
    print(f.read())


if __name__ == "__main__":
  app.run(main)
