"""Executes notebooks with nbclient; exits non-zero if a cell fails.

Usage: python docs/run_notebook.py [NOTEBOOK ...] [--out DIR | --inplace]

Default: notebooks/quickstart.ipynb. Each notebook runs in its own folder with
the repository root on PYTHONPATH (so an uninstalled checkout imports), and
the executed copy, outputs included, is written to DIR (default
docs/_build/notebooks); the committed notebook is left untouched. With
``--inplace`` the outputs are written back into the notebook instead (how the
committed notebook gets its outputs: run it so after changing it).
"""

import argparse
import os
import pathlib
import sys
import time

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(path: pathlib.Path, out_dir: pathlib.Path, timeout: int) -> float:
  nb = nbformat.read(path, as_version=4)
  pythonpath = os.environ.get("PYTHONPATH")
  os.environ["PYTHONPATH"] = os.pathsep.join(
      [str(ROOT)] + ([pythonpath] if pythonpath else []))
  start = time.time()
  try:
    nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}}).execute()
  finally:
    if pythonpath is None:
      del os.environ["PYTHONPATH"]
    else:
      os.environ["PYTHONPATH"] = pythonpath
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
  return time.time() - start


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("notebooks", nargs="*", type=pathlib.Path,
                      default=[ROOT / "notebooks" / "quickstart.ipynb"])
  parser.add_argument("--out", type=pathlib.Path,
                      default=ROOT / "docs" / "_build" / "notebooks")
  parser.add_argument("--inplace", action="store_true",
                      help="write the outputs into the notebook itself")
  parser.add_argument("--timeout", type=int, default=600,
                      help="seconds allowed per cell")
  args = parser.parse_args()
  failed = 0
  for path in args.notebooks:
    path = path.resolve()
    try:
      seconds = run(path, path.parent if args.inplace else args.out,
                    args.timeout)
      print(f"{path.relative_to(ROOT)}: ok in {seconds:.1f} s")
    except nbclient.exceptions.CellExecutionError as e:
      print(f"{path.relative_to(ROOT)}: FAILED\n{e}", file=sys.stderr)
      failed += 1
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
