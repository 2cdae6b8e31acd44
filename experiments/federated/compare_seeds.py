r"""Mean and spread over seeds of the runs of ``experiments.federated.main``.

    python -m experiments.federated.compare_seeds --target=0.6 \
        --workdirs=/tmp/fed/seed0,/tmp/fed/seed1 --out=/tmp/fed/seeds.md

For every method found in all workdirs: final and best test accuracy, and
rounds, uplink bytes and total bytes to ``--target`` test accuracy (over the
seeds that reach it, with how many did); ``mean ± std`` (std with
``ddof=1``), the summary of :func:`sparsejax.training.summarize`. Writes the
markdown table to ``--out`` and the per-seed values beside it as JSON.
"""

import json
import os

from absl import app
from absl import flags

from experiments.federated import train
from sparsejax import training

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "One workdir per seed.", required=True)
flags.DEFINE_float("target", None, "Target test accuracy.", required=True)
flags.DEFINE_string("out", "", "Markdown output (and .json beside it).")


def per_seed(workdirs):
  """``{method: [records of each workdir]}`` of the methods all workdirs ran."""
  methods = sorted(set.intersection(*(
      {m for m in os.listdir(w) if os.path.isfile(os.path.join(w, m,
                                                               "metrics.jsonl"))}
      for w in workdirs)))
  return {m: [training.read_metrics(os.path.join(w, m)) for w in workdirs]
          for m in methods}


def main(argv):
  del argv
  text, data = training.summarize(
      per_seed(FLAGS.workdirs), train.COLUMNS[:2], target=FLAGS.target,
      target_keys=train.TARGET_KEYS)
  print(text)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      f.write(text + "\n")
    with open(os.path.splitext(FLAGS.out)[0] + ".json", "w") as f:
      json.dump(dict(data, workdirs=FLAGS.workdirs), f, indent=1)


if __name__ == "__main__":
  app.run(main)
