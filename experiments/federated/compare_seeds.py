r"""Mean and spread over seeds of the runs of ``experiments.federated.main``.

    python -m experiments.federated.compare_seeds --target=0.6 \
        --workdirs=/tmp/fed/seed0,/tmp/fed/seed1 --out=/tmp/fed/seeds.md

For every method found in all workdirs: rounds, uplink bytes and total bytes
to ``--target`` test accuracy (over the seeds that reach it, with how many
did), final and best test accuracy; ``mean ± std`` (std with ``ddof=1``).
Writes the markdown table to ``--out`` and the per-seed values beside it as
JSON.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from sparsejax import training

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "One workdir per seed.", required=True)
flags.DEFINE_float("target", None, "Target test accuracy.", required=True)
flags.DEFINE_string("out", "", "Markdown output (and .json beside it).")

X_KEYS = ("round", "uplink_bytes", "total_bytes")


def per_seed(workdirs, target):
  """``{method: {key: [value per seed]}}``; ``None`` where not reached."""
  methods = sorted(set.intersection(*(
      {m for m in os.listdir(w) if os.path.isfile(os.path.join(w, m,
                                                               "metrics.jsonl"))}
      for w in workdirs)))
  values = {m: {k: [] for k in X_KEYS + ("final", "best")} for m in methods}
  for w in workdirs:
    evals = {m: [r for r in training.read_metrics(os.path.join(w, m))
                 if "test_accuracy" in r] for m in methods}
    for method, *hit in training.bytes_to_target_table(evals, target, X_KEYS):
      for k, v in zip(X_KEYS, hit):
        values[method][k].append(v)
      acc = [r["test_accuracy"] for r in evals[method]]
      values[method]["final"].append(acc[-1])
      values[method]["best"].append(max(acc))
  return values


def mean_std(values, fmt="{:.4g}"):
  """``mean ± std`` of the non-``None`` values, ``(reached k/n)`` if some are."""
  done = [v for v in values if v is not None]
  if not done:
    return "not reached"
  text = fmt.format(np.mean(done))
  if len(done) > 1:
    text += " ± " + fmt.format(np.std(done, ddof=1))
  if len(done) < len(values):
    text += f" ({len(done)}/{len(values)} seeds)"
  return text


def table(values, target, num_seeds):
  mb = "{:.3g}"
  rows = [(m, mean_std(v["round"]),
           mean_std([None if b is None else b / 1e6 for b in v["uplink_bytes"]],
                    mb),
           mean_std([None if b is None else b / 1e6 for b in v["total_bytes"]],
                    mb),
           mean_std(v["final"], "{:.3f}"), mean_std(v["best"], "{:.3f}"))
          for m, v in values.items()]
  return training.format_table(rows, (
      f"method ({num_seeds} seeds)", f"rounds to {target}",
      f"uplink MB to {target}", f"total MB to {target}", "final test acc",
      "best test acc"))


def main(argv):
  del argv
  values = per_seed(FLAGS.workdirs, FLAGS.target)
  text = table(values, FLAGS.target, len(FLAGS.workdirs))
  print(text)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      f.write(text + "\n")
    with open(os.path.splitext(FLAGS.out)[0] + ".json", "w") as f:
      json.dump({"target": FLAGS.target, "workdirs": FLAGS.workdirs,
                 "per_seed": values}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
