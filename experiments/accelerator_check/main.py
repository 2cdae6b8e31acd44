r"""One prepared run on an accelerator: kernel tests, checks and benchmarks.

On a GPU machine, from the repository root (about 8 minutes on one GPU; jax
with CUDA installed; ``--install_torch`` pip-installs torch if it is absent
and notes the failure if there is no network)::

    python -m experiments.accelerator_check.main --out_dir=$OUT --install_torch

On CPU at tiny sizes (what CI runs, Pallas in interpret mode)::

    python -m experiments.accelerator_check.main --tiny --out_dir=/tmp/acc

Parts, in this order, each a subprocess with its own time limit inside the
``--deadline_s`` budget (a crash, a hang or a lowering that does not compile
is recorded and the other parts still run; ``--parts`` reruns a subset):

* ``env``: date, jax/jaxlib/torch versions, backend and device kind;
* ``checks``: :mod:`experiments.accelerator_check.checks`, every kernel
  bitwise against its reference on large random inputs, Pallas compiled on
  GPU (interpreted on CPU) and the XLA path;
* ``pytest``: ``tests/kernels`` (on GPU the kernels default to compiled
  Pallas, and ``test_pallas.py`` compiles its kernels too);
* ``bench_select``: selection kernels vs ``lax.top_k``, ``approx_max_k`` and
  ``torch.topk`` at ``--sizes`` x ``--ratios``;
* ``bench_step``: dense vs EF + global top-k 0.1% step (ResNet-18, 1 device);
* ``bench_federated``: vectorised engines vs a Python loop over clients.

Each part's output goes to ``<out_dir>/<part>.log`` and its JSON to
``<out_dir>/<part>.json``; ``results.json`` (statuses, commands, results,
the BENCHMARKS.md targets) and ``summary.md`` are rewritten after every part.
Exits 1 if a part failed or timed out.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from xml.etree import ElementTree

from absl import app
from absl import flags

_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where results go.",
                               required=True)
_TINY = flags.DEFINE_bool("tiny", False,
                          "Tiny sizes, so that the run takes about a minute "
                          "on CPU (CI).")
PARTS = ("env", "checks", "pytest", "bench_select", "bench_step",
         "bench_federated")
_PARTS = flags.DEFINE_multi_enum("parts", list(PARTS), PARTS,
                                 "Parts to run (in the fixed order above).")
_SIZES = flags.DEFINE_list("sizes", None, "bench_select N (default: preset).")
_RATIOS = flags.DEFINE_list("ratios", None, "k / N of checks and benchmark.")
_CHECK_SIZES = flags.DEFINE_list("check_sizes", None, "N of the checks.")
_PYTEST = flags.DEFINE_list("pytest_targets", None, "What pytest runs.")
_DEADLINE = flags.DEFINE_integer("deadline_s", None,
                                 "Budget of the whole run in seconds.")
_INSTALL_TORCH = flags.DEFINE_bool(
    "install_torch", False, "pip install torch first if it is not importable.")

# Per part: flags and time limit (s). The GPU preset fits ~8 minutes.
PRESETS = {
    "full": {
        "deadline_s": 470,
        "sizes": ["16777216", "67108864", "268435456"],
        "ratios": ["0.001", "0.01"],
        "check_sizes": ["1000003", "268435456"],
        "pytest_targets": ["tests/kernels"],
        "bench_select": ["--repeats=5", "--baselines=lax_top_k",
                         "--baselines=approx_max_k", "--baselines=torch"],
        "bench_step": ["--model=resnet18", "--width=64", "--devices=1",
                       "--batch_size=64", "--ratio=0.001",
                       "--compressor=top_k", "--repeats=10"],
        "bench_federated": ["--clients_per_round=8,64,256",
                            "--num_clients=256", "--devices=1",
                            "--repeats=3"],
        "limits": {"env": 60, "checks": 100, "pytest": 120,
                   "bench_select": 120, "bench_step": 90,
                   "bench_federated": 120, "install_torch": 120},
    },
    "tiny": {
        "deadline_s": 400,
        "sizes": ["65536"],
        "ratios": ["0.01"],
        "check_sizes": ["20011"],
        "pytest_targets": [
            "tests/kernels/test_pallas.py::test_block_counts_and_kth_largest"],
        "bench_select": ["--repeats=2"],
        "bench_step": ["--model=mlp", "--devices=2", "--batch_size=8",
                       "--repeats=1"],
        "bench_federated": ["--clients_per_round=2", "--num_clients=2",
                            "--devices=1", "--local_steps=1",
                            "--batch_size=2", "--repeats=1"],
        "limits": {"env": 60, "checks": 120, "pytest": 60,
                   "bench_select": 120, "bench_step": 90,
                   "bench_federated": 300, "install_torch": 60},
    },
}

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_ENV_SCRIPT = ("import json, sys; "
               "from experiments.accelerator_check import checks; "
               "json.dump(checks.environment(), open(sys.argv[1], 'w'))")


def preset() -> dict:
  """The tiny or full preset with the explicit flags applied."""
  cfg = dict(PRESETS["tiny" if _TINY.value else "full"])
  for flag, key in ((_SIZES, "sizes"), (_RATIOS, "ratios"),
                    (_CHECK_SIZES, "check_sizes"), (_PYTEST, "pytest_targets"),
                    (_DEADLINE, "deadline_s")):
    if flag.value is not None:
      cfg[key] = flag.value
  return cfg


def part_command(name: str, cfg: dict, json_path: str) -> list[str]:
  """The argv of one part (run from the repository root)."""
  py = sys.executable
  if name == "env":
    return [py, "-c", _ENV_SCRIPT, json_path]
  if name == "install_torch":
    return [py, "-m", "pip", "install", "--retries=0", "--timeout=30",
            "torch"]
  if name == "checks":
    return [py, "-m", "experiments.accelerator_check.checks",
            "--sizes=" + ",".join(cfg["check_sizes"]),
            "--ratios=" + ",".join(cfg["ratios"]), "--json_out=" + json_path]
  if name == "pytest":
    return [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--junitxml=" + json_path, *cfg["pytest_targets"]]
  if name == "bench_select":
    return [py, "-m", "experiments.bench_select.main",
            "--sizes=" + ",".join(cfg["sizes"]),
            "--ratios=" + ",".join(cfg["ratios"]), *cfg["bench_select"],
            "--json_out=" + json_path]
  return [py, "-m", f"experiments.{name}.main", *cfg[name],
          "--json_out=" + json_path]


def run_part(argv: list[str], log_path: str, limit: float) -> tuple[str, int]:
  """Runs ``argv`` with output to ``log_path``: ``(status, returncode)``.

  The part runs in its own process group, killed whole at ``limit``.
  """
  with open(log_path, "w") as log:
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
      rc = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      return "timeout", proc.returncode
  return ("ok" if rc == 0 else "failed"), rc


def read_result(name: str, path: str):
  """A part's JSON (pytest: its JUnit XML as counts and failures), or None."""
  if not os.path.exists(path):
    return None
  if name == "pytest":
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failures = [f"{case.get('classname')}::{case.get('name')}"
                for case in suite.iter("testcase")
                if case.find("failure") is not None
                or case.find("error") is not None]
    return {key: int(suite.get(key, 0))
            for key in ("tests", "failures", "errors", "skipped")} | {
                "failed_tests": failures}
  with open(path) as f:
    return json.load(f)


def log_tail(path: str, lines: int = 30) -> str:
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-lines:])


# ---------------------------------------------------------------------------
# Targets (BENCHMARKS.md) and the summary.


def _select_ms(runs, n, ratio, prefix):
  for run in runs:
    if run["n"] == n and run["ratio"] == ratio:
      for row in run["rows"]:
        if row["method"].startswith(prefix):
          return row
  return None


def targets(results: dict) -> list[dict]:
  """Each BENCHMARKS.md target that the results measure, met or not."""
  parts = results["parts"]
  backend = (parts.get("env", {}).get("result") or {}).get("backend")
  out = []

  def add(what, measured, limit, unit, where=""):
    out.append({"target": what, "where": where, "measured": measured,
                "limit": limit, "unit": unit, "met": measured <= limit})

  select = (parts.get("bench_select", {}).get("result") or {}).get("runs", [])
  for run in select:
    n, ratio = run["n"], run["ratio"]
    where = f"N={n}, k/N={ratio}"
    top = _select_ms(select, n, ratio, "sparsejax top_k_select")
    read = _select_ms(select, n, ratio, "one read")
    thr = _select_ms(select, n, ratio, "sparsejax threshold_select")
    cws = [r for r in run["rows"]
           if r["method"].startswith("sparsejax cost_weighted_select")]
    if backend == "gpu" and n == 268435456 and top:
      add("exact top-k time", top["ms"], 1.0 if ratio == 0.001 else 2.0, "ms",
          where)
      if thr:
        add("threshold selection with compaction", thr["ms"], 0.6, "ms",
            where)
    if backend == "cpu" and top and read and ratio == 0.01:
      add("exact top-k in reads of the vector", top["ms"] / read["ms"], 5.0,
          "x one read", where)
    if backend == "cpu" and top:
      for cw in cws:
        add(f"{cw['method']} / exact top-k", cw["ms"] / top["ms"], 1.5, "x",
            where)
    input_mb = n * 4 / 2**20
    for cw in cws:
      if cw["temp_mb"] is not None:
        add(f"{cw['method']} temporary memory / input", cw["temp_mb"] /
            input_mb, 2.0, "x input", where)
  step = parts.get("bench_step", {}).get("result")
  if step and backend == "gpu":
    add("compressed step / dense step", step["ratio_compressed_over_dense"],
        1.15, "x", f"{step['model']}, {step['num_params']} params")
  fed = parts.get("bench_federated", {}).get("result")
  if fed and backend == "gpu":
    for r in fed["results"]:
      if r["clients_per_round"] >= 64 and r["engine"] == "vmap":
        out.append({"target": "federated vmap engine / Python loop",
                    "where": f"S={r['clients_per_round']}",
                    "measured": r["speedup_over_loop"], "limit": 10.0,
                    "unit": "x (at least)",
                    "met": r["speedup_over_loop"] >= 10.0})
  return out


def _fmt(v, spec=".2f"):
  return "" if v is None else format(v, spec)


def summary(results: dict) -> str:
  """Markdown summary of ``results`` (the tables BUILD_NOTES.md needs)."""
  parts = results["parts"]
  env = (parts.get("env", {}).get("result") or {})
  lines = ["# Accelerator check", "",
           f"Command: `{results['command']}`", "",
           f"Started {results['started']}; {env.get('device_kind')} "
           f"({env.get('backend')}, {env.get('device_count')} device(s)), "
           f"jax {env.get('jax')}, jaxlib {env.get('jaxlib')}, torch "
           f"{env.get('torch')}, {env.get('cpu_count')} CPU cores.", "",
           "| part | status | seconds | log |", "|---|---|---|---|"]
  for name, part in parts.items():
    lines.append(f"| {name} | {part['status']} | {part['seconds']:.0f} | "
                 f"{os.path.basename(part.get('log', ''))} |")
  for name, part in parts.items():
    if part["status"] in ("failed", "timeout"):
      lines += ["", f"## {name}: {part['status']}", "", "```",
                part.get("log_tail", "").rstrip(), "```"]
  checks = (parts.get("checks", {}).get("result") or {}).get("checks")
  if checks:
    bad = [c for c in checks if not c["ok"]]
    lines += ["", "## Kernels against their references", "",
              f"{len(checks) - len(bad)} of {len(checks)} checks bitwise "
              f"equal (Pallas: {parts['checks']['result']['pallas']}).", ""]
    if bad:
      lines += ["| kernel | path | N | k | input | problem |",
                "|---|---|---|---|---|---|"]
      for c in bad:
        problem = c.get("mismatch") or c.get("error", "").strip().splitlines()[
            -1]
        lines.append(f"| {c['kernel']} | {c['path']} | {c['n']} | {c['k']} | "
                     f"{c['input']} | {problem} |")
  tests = parts.get("pytest", {}).get("result")
  if tests:
    lines += ["", "## pytest", "",
              f"{tests['tests']} tests, {tests['failures']} failures, "
              f"{tests['errors']} errors, {tests['skipped']} skipped."]
    lines += [f"- {t}" for t in tests["failed_tests"]]
  select = parts.get("bench_select", {}).get("result")
  if select:
    lines += ["", "## bench_select", ""]
    if env.get("torch") is None:
      lines += ["torch is not installed here: torch.topk not timed.", ""]
    for run in select["runs"]:
      lines += [f"N = {run['n']}, k/N = {run['ratio']} (k = {run['k']})", "",
                "| method | ms | x lax.top_k | reads of x | XLA temp MB "
                "| note |", "|---|---|---|---|---|---|"]
      for r in run["rows"]:
        lines.append(f"| {r['method']} | {r['ms']:.3f} | "
                     f"{_fmt(r['vs_lax_top_k'])} | {_fmt(r['reads'], '.1f')}"
                     f" | {_fmt(r['temp_mb'], '.1f')} | {r['note']} |")
      lines.append("")
  step = parts.get("bench_step", {}).get("result")
  if step:
    lines += ["", "## bench_step", "",
              f"{step['model']} ({step['num_params']} params), "
              f"{step['devices']} device(s), batch {step['batch_size']}: "
              f"dense {step['dense_ms']:.2f} ms, compressed "
              f"({step['compressor']} {step['ratio']}) "
              f"{step['compressed_ms']:.2f} ms, ratio "
              f"{step['ratio_compressed_over_dense']:.3f}."]
  fed = parts.get("bench_federated", {}).get("result")
  if fed:
    lines += ["", "## bench_federated", "",
              "| S | engine | ms/round | updates/s | x loop |",
              "|---|---|---|---|---|"]
    for r in fed["results"]:
      lines.append(f"| {r['clients_per_round']} | {r['engine']} | "
                   f"{1e3 * r['seconds_per_round']:.2f} | "
                   f"{r['updates_per_second']:.1f} | "
                   f"{r['speedup_over_loop']:.2f} |")
  if results["targets"]:
    lines += ["", "## Targets (BENCHMARKS.md)", "",
              "| target | where | measured | limit | met |",
              "|---|---|---|---|---|"]
    for t in results["targets"]:
      lines.append(f"| {t['target']} | {t['where']} | {t['measured']:.3f} | "
                   f"{t['limit']} {t['unit']} | "
                   f"{'yes' if t['met'] else 'NO'} |")
  return "\n".join(lines) + "\n"


def write(results: dict, out_dir: str) -> None:
  results["targets"] = targets(results)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write(summary(results))


def main(argv):
  del argv
  cfg = preset()
  out_dir = os.path.abspath(_OUT_DIR.value)
  os.makedirs(out_dir, exist_ok=True)
  names = [p for p in PARTS if p in _PARTS.value]
  if (_INSTALL_TORCH.value and "bench_select" in names
      and importlib.util.find_spec("torch") is None):
    names.insert(names.index("bench_select"), "install_torch")
  start = time.monotonic()
  results = {"command": " ".join(["python -m experiments.accelerator_check."
                                  "main", *sys.argv[1:]]),
             "started": datetime.datetime.now().isoformat(timespec="seconds"),
             "tiny": _TINY.value, "config": cfg, "parts": {}}
  for name in names:
    left = cfg["deadline_s"] - (time.monotonic() - start)
    limit = min(cfg["limits"][name], left)
    json_path = os.path.join(out_dir, name + (
        ".xml" if name == "pytest" else ".json"))
    log_path = os.path.join(out_dir, name + ".log")
    argv = part_command(name, cfg, json_path)
    part = {"argv": argv, "log": log_path, "limit_s": limit}
    if limit < 10:
      part |= {"status": "skipped", "seconds": 0.0,
               "note": "no time left in --deadline_s"}
    else:
      print(f"[{time.monotonic() - start:5.0f} s] {name} (limit {limit:.0f} "
            f"s): {' '.join(argv[1:])}", flush=True)
      t0 = time.monotonic()
      part["status"], part["returncode"] = run_part(argv, log_path, limit)
      part["seconds"] = time.monotonic() - t0
      part["result"] = read_result(name, json_path)
      if part["status"] != "ok":
        part["log_tail"] = log_tail(log_path)
      print(f"        {part['status']} in {part['seconds']:.0f} s", flush=True)
    results["parts"][name] = part
    write(results, out_dir)
  print(summary(results))
  bad = [n for n, p in results["parts"].items()
         if p["status"] in ("failed", "timeout") and n != "install_torch"]
  if bad:
    print(f"parts not ok: {', '.join(bad)}")
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
