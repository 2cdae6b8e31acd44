r"""Every selection kernel against its ``*_reference`` twin on random inputs.

    python -m experiments.accelerator_check.checks --sizes=1000003 \
        --ratios=0.001,0.01 --json_out=/tmp/checks.json

For each ``N`` in ``--sizes`` and ``k = k_from_ratio(N, ratio)``, on a normal
and a tie-heavy vector: exact top-k, blockwise top-k, threshold selection
(threshold = the k-th largest magnitude, buffer 2k) and cost-weighted
selection (integer costs 1..4; budget k/2 in a buffer of k, and the overflow
branch: the same budget in a buffer of k/8), each through the XLA path and,
except blockwise, the Pallas path: compiled on GPU, in interpret mode
elsewhere. Every output is compared bitwise with the reference. A check that
raises (a lowering that does not compile) is recorded with its error and
the others still run. Writes JSON; exits 1 if a check failed.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import kernels
from sparsejax.kernels import cost_weighted
from sparsejax.kernels import pallas_gpu
from sparsejax.kernels import reference
from sparsejax.kernels import threshold
from sparsejax.kernels import topk

_SIZES = flags.DEFINE_list("sizes", ["1000003"], "Vector lengths N.")
_RATIOS = flags.DEFINE_list("ratios", ["0.001", "0.01"], "k / N values.")
_BLOCK = flags.DEFINE_integer("block_size", 1024, "Blockwise top-k block.")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Write the results here.")

INPUTS = ("normal", "ties")


def environment() -> dict:
  """Versions, backend and device of this process (for BUILD_NOTES.md)."""

  def version(package):
    try:
      return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      return None

  device = jax.devices()[0]
  return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "jax": jax.__version__, "jaxlib": version("jaxlib"),
          "torch": version("torch"), "backend": jax.default_backend(),
          "device_kind": device.device_kind,
          "device_count": jax.device_count(),
          "python": sys.version.split()[0], "platform": platform.platform(),
          "cpu_count": os.cpu_count()}


def pallas_config() -> dict:
  """The Pallas settings of the checks: compiled on GPU, interpreted else."""
  return {"block": pallas_gpu.BLOCK,
          "interpret": jax.default_backend() != "gpu"}


def make_input(kind: str, n: int, seed: int = 0) -> jax.Array:
  key = jax.random.key(seed)
  x = jax.random.normal(key, (n,), jnp.float32)
  if kind == "ties":  # a few distinct magnitudes, both signs
    x = jnp.round(2 * x)
  return x


def first_mismatch(got, want) -> str | None:
  """Bitwise comparison of output tuples; a description of the first diff."""
  for i, (g, w) in enumerate(zip(got, want, strict=True)):
    g, w = np.asarray(g), np.asarray(w)
    if g.shape != w.shape or g.dtype != w.dtype:
      return f"output {i}: {g.dtype}{g.shape} vs reference {w.dtype}{w.shape}"
    if g.dtype.kind == "f":
      g, w = g.view(np.uint32), w.view(np.uint32)
    diff = np.flatnonzero(g.reshape(-1) != w.reshape(-1))
    if diff.size:
      j = diff[0]
      return (f"output {i}: {diff.size} entries differ, first at {j}: "
              f"{g.reshape(-1)[j]} vs reference {w.reshape(-1)[j]}")
  return None


def cases(n: int, k: int, block_size: int, pallas: dict):
  """``(name, path, fast_fn, reference_fn)`` of every check at ``(n, k)``.

  Both functions are jitted and take ``(x, cost)`` (cost: a vector of ``n``,
  an argument rather than a constant folded into the program).
  """
  budget = k / 2

  def kth_magnitude(x):
    return jnp.abs(reference.top_k_select_reference(x, k)[0][-1])

  for path, cfg in (("xla", None), ("pallas", pallas)):
    yield ("top_k_select", path,
           lambda x, _, cfg=cfg: topk.top_k_select_impl(x, k, pallas=cfg),
           lambda x, _: reference.top_k_select_reference(x, k))
    if path == "xla":
      yield (f"blockwise_top_k_select B={block_size}", path,
             lambda x, _: topk.blockwise_top_k_select(x, k, block_size),
             lambda x, _: reference.blockwise_top_k_select_reference(
                 x, k, block_size))
    yield ("threshold_select max_count=2k", path,
           lambda x, _, cfg=cfg: threshold.threshold_select_impl(
               x, kth_magnitude(x), 2 * k, pallas=cfg),
           lambda x, _: reference.threshold_select_reference(
               x, kth_magnitude(x), 2 * k))
    for name, size in (("max_count=k", k),
                       ("overflow max_count=k/8", max(1, k // 8))):
      yield (f"cost_weighted_select {name}", path,
             lambda x, cost, cfg=cfg, size=size:
             cost_weighted.cost_weighted_select_impl(
                 x, cost, budget, max_count=size, pallas=cfg),
             lambda x, cost, size=size:
             reference.cost_weighted_select_reference(
                 x, cost, budget, max_count=size))


def run_checks(sizes, ratios, block_size: int) -> list[dict]:
  """One record per (N, k, kernel, path, input); see the module docstring."""
  records = []
  pallas = pallas_config()
  for n in sizes:
    for ratio in ratios:
      k = kernels.k_from_ratio(n, ratio)
      cost = jnp.asarray(np.random.default_rng(0).integers(1, 5, n),
                         jnp.float32)
      for name, path, fast, ref in cases(n, k, block_size, pallas):
        fast, ref = jax.jit(fast), jax.jit(ref)
        for kind in INPUTS:
          x = make_input(kind, n)
          record = {"kernel": name, "path": path, "n": n, "ratio": ratio,
                    "k": k, "input": kind}
          start = time.perf_counter()
          try:
            record["mismatch"] = first_mismatch(
                jax.block_until_ready(fast(x, cost)), ref(x, cost))
            record["ok"] = record["mismatch"] is None
          except Exception:  # pylint: disable=broad-except
            record["ok"] = False
            record["error"] = traceback.format_exc(limit=-6)[-4000:]
          record["seconds"] = time.perf_counter() - start
          print(f"{'ok  ' if record['ok'] else 'FAIL'} {name} [{path}] N={n}"
                f" k={k} {kind} ({record['seconds']:.1f} s)", flush=True)
          records.append(record)
          del x
  return records


def main(argv):
  del argv
  records = run_checks([int(s) for s in _SIZES.value],
                       [float(s) for s in _RATIOS.value], _BLOCK.value)
  failed = [r for r in records if not r["ok"]]
  print(f"{len(records) - len(failed)} of {len(records)} checks passed")
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump({"env": environment(), "pallas": pallas_config(),
                 "checks": records}, f, indent=1)
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
