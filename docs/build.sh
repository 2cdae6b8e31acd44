#!/usr/bin/env bash
# Builds and checks the documentation; exits non-zero on the first failure.
#   1. HTML with warnings as errors (autodoc imports every public module),
#      checked to render offline (local MathJax, no script from the network);
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
# Offline: MathJax is the local copy (the [docs] extra), no page loads a script
# from the network.
test -f "$OUT/html/_static/mathjax/tex-chtml.js" || {
  echo "MathJax was not copied to $OUT/html/_static/mathjax" >&2; exit 1; }
if grep -rlE '<script[^>]*src="(https?:)?//' "$OUT/html" --include='*.html'; then
  echo "the pages above load scripts from the network" >&2; exit 1
fi
echo "== sphinx doctest"
"$PYTHON" -m sphinx -W -q -b doctest docs "$OUT/doctest"
tail -n 6 "$OUT/doctest/output.txt"
echo "== notebooks"
"$PYTHON" docs/run_notebook.py --out "$OUT/notebooks"
echo "docs built and checked in $(( $(date +%s) - start )) s"
