r"""Mean and spread over seeds of the runs of one experiment binary.

    python -m experiments.compare_seeds --experiment=dp_train --target=0.95 \
        --workdirs=/tmp/cmp/0,/tmp/cmp/1,/tmp/cmp/2 --out=/tmp/cmp/report

For every method found in all workdirs (one per seed) of
``experiments.<experiment>.main``: the binary's summary columns (final and
best test accuracy, bytes, ...) as ``mean ± std`` over seeds (std with
``ddof=1``), and the steps/rounds and bytes to ``--target`` test accuracy
(over the seeds that reach it, with how many did), from
:func:`sparsejax.training.summarize`; the binary's plots with the mean over
seeds and a min..max band. Writes ``summary.md``, ``summary.json`` (values
per seed) and the PNGs into ``--out``.
"""

import importlib
import os

from absl import app
from absl import flags

from sparsejax import training

EXPERIMENTS = ("dp_train", "federated")

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_enum("experiment", "federated", EXPERIMENTS,
                    "The binary whose runs these are.")
  flags.DEFINE_list("workdirs", None, "One workdir per seed.", required=True)
  flags.DEFINE_float("target", None, "Target test accuracy.", required=True)
  flags.DEFINE_string("out", None, "Output directory.", required=True)


def per_seed(workdirs):
  """``{method: [records of each workdir]}`` of the methods all workdirs ran."""
  methods = sorted(set.intersection(*(
      {m for m in os.listdir(w) if os.path.isfile(os.path.join(w, m,
                                                               "metrics.jsonl"))}
      for w in workdirs)))
  if not methods:
    raise FileNotFoundError(f"no method has metrics.jsonl in every one of "
                            f"{workdirs}")
  return {m: [training.read_metrics(os.path.join(w, m)) for w in workdirs]
          for m in methods}


def write(experiment: str, workdirs, target: float, out: str) -> str:
  """Writes the summary and plots of ``workdirs`` into ``out``."""
  train = importlib.import_module(f"experiments.{experiment}.train")
  os.makedirs(out, exist_ok=True)
  x_keys = getattr(train, "TARGET_KEYS", ("step", "bytes_sent"))
  return training.write_summary(
      out, per_seed(workdirs), train.COLUMNS, plots=train.PLOTS,
      log_fn=print, target=target, target_keys=x_keys)


def main(argv):
  del argv
  write(FLAGS.experiment, FLAGS.workdirs, FLAGS.target, FLAGS.out)


if __name__ == "__main__":
  define_flags()
  app.run(main)
