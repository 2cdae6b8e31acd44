#!/usr/bin/env bash
# Builds and checks the documentation; exits non-zero on the first failure.
#   1. HTML with warnings as errors (autodoc imports every public module);
#   2. the doctest builder: guides' testcode blocks and docstring examples;
#   3. notebooks/quickstart.ipynb executed with nbclient (outputs to
#      docs/_build/notebooks; the committed notebook is not modified).
# Needs the docs extra: pip install -e '.[docs]'. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
OUT=docs/_build

start=$(date +%s)
echo "== sphinx html (-W)"
"$PYTHON" -m sphinx -W --keep-going -q -b html docs "$OUT/html"
echo "== sphinx doctest"
"$PYTHON" -m sphinx -W -q -b doctest docs "$OUT/doctest"
tail -n 6 "$OUT/doctest/output.txt"
echo "== notebooks"
"$PYTHON" docs/run_notebook.py --out "$OUT/notebooks"
echo "docs built and checked in $(( $(date +%s) - start )) s"
