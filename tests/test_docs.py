"""The API reference (docs/api/*.rst) covers every public name, documented.

Public names: ``sparsejax.__all__`` and the ``__all__`` of each subpackage
(every non-module attribute without a leading underscore where a subpackage
has no ``__all__``). A name is covered when an ``auto*`` directive of the API
pages names it, and documented when it has its own docstring (a function or a
class) or, for a constant, a ``#:`` doc comment or docstring in its module or
a description under its directive. Parsing the rst keeps this fast; the
Sphinx build (docs/build.sh) checks the rest. The compressor tables of
README.md and the compressors guide list the same factories, with bit counts
that the code's messages match. The quickstart notebook is committed with
its outputs, and README's Colab badge opens it.
"""

import ast
import importlib
import inspect
import json
import math
import pathlib
import re

import jax.numpy as jnp
import pytest

import sparsejax as sj

ROOT = pathlib.Path(__file__).resolve().parents[1]
API_DIR = ROOT / "docs" / "api"
PACKAGES = ("sparsejax", "sparsejax.parallel", "sparsejax.federated",
            "sparsejax.kernels", "sparsejax.data", "sparsejax.models",
            "sparsejax.training")

_DIRECTIVE = re.compile(r"^\.\. (auto\w+|currentmodule)::\s*(\S+)\s*$")


def public_names(package: str) -> list[str]:
  module = importlib.import_module(package)
  names = getattr(module, "__all__", None)
  if names is None:
    names = [n for n, v in vars(module).items()
             if not n.startswith("_") and not inspect.ismodule(v)
             and n != "annotations"]
  return sorted(names)


def documented_names() -> dict[str, str]:
  """``{full name: description under its directive}`` of the API pages."""
  found = {}
  for page in sorted(API_DIR.glob("*.rst")):
    current = None
    lines = page.read_text().splitlines()
    for i, line in enumerate(lines):
      match = _DIRECTIVE.match(line)
      if not match:
        continue
      kind, target = match.groups()
      if kind in ("currentmodule", "automodule"):  # both set the module
        current = target
        continue
      name = target if target.startswith("sparsejax") else f"{current}.{target}"
      body = []
      for following in lines[i + 1:]:
        if following and not following.startswith(" "):
          break
        if not following.strip().startswith(":"):
          body.append(following.strip())
      found[name] = " ".join(body).strip()
  return found


def _own_docstring(obj) -> str:
  if inspect.isclass(obj):
    doc = obj.__dict__.get("__doc__") or ""
    # NamedTuple/dataclass placeholders such as "Point(x, y)" are not docs.
    if re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc.strip(), re.S):
      return ""
    return doc.strip()
  return (inspect.getdoc(obj) or "").strip()


def _constant_has_doc_comment(package: str, name: str) -> bool:
  """A ``#:`` comment above, or a string right below, the assignment."""
  init = importlib.import_module(package).__file__
  tree = ast.parse(pathlib.Path(init).read_text())
  module, source_name = package, name
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:
        if (alias.asname or alias.name) == name:
          module, source_name = node.module, alias.name
  path = pathlib.Path(importlib.import_module(module).__file__)
  lines = path.read_text().splitlines()
  body = ast.parse("\n".join(lines)).body
  for i, node in enumerate(body):
    targets = (node.targets if isinstance(node, ast.Assign) else
               [node.target] if isinstance(node, ast.AnnAssign) else [])
    if any(isinstance(t, ast.Name) and t.id == source_name for t in targets):
      above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
      below = body[i + 1] if i + 1 < len(body) else None
      return above.startswith("#:") or (
          isinstance(below, ast.Expr) and isinstance(below.value, ast.Constant)
          and isinstance(below.value.value, str))
  return False


@pytest.fixture(scope="module")
def documented():
  return documented_names()


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_api_reference(package, documented):
  missing = [f"{package}.{n}" for n in public_names(package)
             if f"{package}.{n}" not in documented]
  assert not missing, (
      f"public names missing from docs/api/*.rst (add an autofunction/"
      f"autoclass/autodata directive): {missing}")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package, documented):
  module = importlib.import_module(package)
  undocumented = []
  for name in public_names(package):
    obj = getattr(module, name)
    if inspect.isclass(obj) or callable(obj):
      ok = bool(_own_docstring(obj))
    else:  # a constant: doc comment in the source, or text in the rst
      ok = (_constant_has_doc_comment(package, name)
            or bool(documented.get(f"{package}.{name}")))
    if not ok:
      undocumented.append(f"{package}.{name}")
  assert not undocumented, f"public names without a docstring: {undocumented}"


def test_api_pages_name_existing_objects(documented):
  unknown = []
  for full_name in documented:
    module_name, _, attr = full_name.rpartition(".")
    try:
      getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
      unknown.append(full_name)
  assert not unknown, f"docs/api/*.rst documents unknown names: {unknown}"


# -- the compressor tables of README.md and the compressors guide -------------

_N, _LEVELS = 1000, 15
_TABLE_CASES = {
    "top_k": lambda: sj.top_k(k=10),
    "blockwise_top_k": lambda: sj.blockwise_top_k(0.01, block_size=100),
    "hard_threshold": lambda: sj.hard_threshold(0.99),
    "hard_threshold budgeted": lambda: sj.hard_threshold(budget=100,
                                                         num_steps=10),
    "random_k": lambda: sj.random_k(0.01),
    "qsgd": lambda: sj.qsgd(levels=_LEVELS),
    "scaled_sign": sj.scaled_sign,
    "terngrad": sj.terngrad,
    "natural_compression": sj.natural_compression,
    "onebit": sj.onebit,
    "cast": lambda: sj.cast(jnp.bfloat16),
    "no_compression": sj.no_compression,
    "cost_weighted": lambda: sj.cost_weighted("uniform", energy_ratio=0.01),
}


def _readme_table() -> list[tuple[str, str, str]]:
  lines = (ROOT / "README.md").read_text().split("## Compressors", 1)[1]
  rows = [re.split(r"(?<!\\)\|", line.strip())[1:-1]
          for line in lines.strip().splitlines()
          if line.startswith("|")][2:]  # header and |---|
  return [tuple(cell.strip() for cell in row) for row in rows]


def _guide_table() -> list[tuple[str, str, str]]:
  text = (ROOT / "docs" / "guides" / "compressors.rst").read_text()
  lines = text.split("The compressors", 1)[1].splitlines()
  rules = [i for i, line in enumerate(lines) if line.startswith("====")][:3]
  columns = [m.span() for m in re.finditer("=+", lines[rules[0]])]
  starts = [a for a, _ in columns] + [None]
  return [tuple(line[a:b].strip() for a, b in zip(starts, starts[1:]))
          for line in lines[rules[1] + 1:rules[2]]]


def _normal(cell: str) -> str:
  """A cell without markup, spaces or unicode maths: ``k*(32+32)``."""
  for old, new in (("``", ""), ("`", ""), ("\\|", "|"), (" ", ""),
                   ("·", "*"), ("⌈", "ceil("), ("⌉", ")"), ("real", "")):
    cell = cell.replace(old, new)
  return cell


def _case(factory_cell: str) -> str:
  name = _normal(factory_cell).split("(")[0]
  if name == "hard_threshold" and "budget=" in factory_cell:
    return "hard_threshold budgeted"
  return name


@pytest.mark.parametrize("table", [_readme_table, _guide_table],
                         ids=["README", "guide"])
def test_compressor_table_bits_match_the_code(table):
  rows = table()
  assert sorted({_case(r[0]) for r in rows}) == sorted(_TABLE_CASES)
  x = {"w": jnp.linspace(-1.0, 1.0, _N)}
  formula = None
  for factory, keeps, bits_cell in rows:
    c = _TABLE_CASES[_case(factory)]()
    message, _ = c.encode(x, c.init(x))
    nnz = int(jnp.count_nonzero(sj.decode(message)["w"]))
    formula = formula if _normal(bits_cell) == "same" else _normal(bits_cell)
    expected = eval(formula, {"ceil": math.ceil, "log2": math.log2},  # pylint: disable=eval-used
                    {"k": nnz, "nnz": nnz, "n": _N, "s": _LEVELS})
    bits = sj.exact(sj.compress.message_size(message)[1])
    assert bits == expected, (factory, bits_cell, bits)
    if _case(factory) == "cost_weighted":
      assert "|x|^p/c" in _normal(keeps)


def test_readme_and_guide_tables_list_the_same_compressors():
  assert ([_normal(r[0]) for r in _readme_table()]
          == [_normal(r[0]) for r in _guide_table()])


# -- the quickstart notebook and README's Colab badge --------------------------

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def test_notebook_is_committed_with_outputs_and_no_error():
  cells = json.loads(NOTEBOOK.read_text())["cells"]
  code = [c for c in cells if c["cell_type"] == "code"]
  assert code and all(c["outputs"] for c in code), (
      "run `python docs/run_notebook.py --inplace` after changing the notebook")
  assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
  assert not [o for c in code for o in c["outputs"]
              if o["output_type"] == "error"]


def test_notebook_installs_from_one_marked_variable():
  first = "".join(next(c for c in json.loads(NOTEBOOK.read_text())["cells"]
                       if c["cell_type"] == "code")["source"])
  assert len(re.findall(r"^SPARSEJAX_SOURCE = \"[^\"<>]+\"$", first, re.M)) == 1
  assert 'find_spec("sparsejax") is not None' in first  # installed: skipped


def test_readme_colab_badge_opens_the_notebook():
  badge = re.search(r"\(https://colab\.research\.google\.com/github/"
                    r"[^/]+/[^/]+/blob/[^/]+/([^)]+)\)",
                    (ROOT / "README.md").read_text())
  assert badge and (ROOT / badge.group(1)) == NOTEBOOK
