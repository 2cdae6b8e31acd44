"""Writes synthetic runs in the experiment binaries' layout (report tests)."""

import json
import os


def write_run(root, method, seed, records):
  """``records`` as ``<root>/seed<seed>/<method>/metrics.jsonl``."""
  d = os.path.join(root, f"seed{seed}", method)
  os.makedirs(d)
  with open(os.path.join(d, "metrics.jsonl"), "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
