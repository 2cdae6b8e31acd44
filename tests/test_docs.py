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

import jax
import jax.numpy as jnp
import numpy as np
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
_X = {"w": jnp.linspace(-1.0, 1.0, _N)}
_TWO_LEAVES = {"w": jnp.linspace(-1.0, 1.0, 600), "b": jnp.linspace(-1, 1, 400)}
_MATRIX = {"w": jnp.linspace(-1.0, 1.0, _N).reshape(40, 25)}

# name -> (compressor, input, variables of the bits formula besides k (the
# entries sent), nnz, n (entries in the input) and s).
_TABLE_CASES = {
    "top_k": (lambda: sj.top_k(k=10), _X, {}),
    "blockwise_top_k": (  # k = 13 in 10 blocks: 2 per block, 20 sent
        lambda: sj.blockwise_top_k(0.013, block_size=100), _X,
        {"k": 13, "blocks": 10}),
    "hard_threshold": (lambda: sj.hard_threshold(0.99), _TWO_LEAVES,
                       {"leaves": 2}),
    "hard_threshold budgeted": (
        lambda: sj.hard_threshold(budget=100, num_steps=10), _TWO_LEAVES, {}),
    "random_k": (lambda: sj.random_k(0.01), _X, {}),
    "qsgd": (lambda: sj.qsgd(levels=_LEVELS), _X, {}),
    "scaled_sign": (sj.scaled_sign, _X, {}),
    "terngrad": (sj.terngrad, _X, {}),
    "natural_compression": (sj.natural_compression, _X, {}),
    "onebit": (sj.onebit, _X, {}),
    "cast": (lambda: sj.cast(jnp.bfloat16), _X, {}),
    "no_compression": (sj.no_compression, _X, {}),
    "cost_weighted": (
        lambda: sj.cost_weighted("uniform", energy_ratio=0.01), _TWO_LEAVES,
        {}),
    "powersgd": (lambda: sj.powersgd(rank=2, start_iter=0), _MATRIX,
                 {"rows": 40, "cols": 25, "r": 2}),
    "sign_majority_vote": (sj.sign_majority_vote, _X, {}),
    "dgc": (lambda: sj.dgc(0.01), _X, {}),
}


def _readme_table() -> list[tuple[str, ...]]:
  lines = (ROOT / "README.md").read_text().split("## Compressors", 1)[1]
  rows = [re.split(r"(?<!\\)\|", line.strip())[1:-1]
          for line in lines.strip().splitlines()
          if line.startswith("|")][2:]  # header and |---|
  return [tuple(cell.strip() for cell in row) for row in rows]


def _guide_table() -> list[tuple[str, ...]]:
  """The rows of the guide's ``list-table`` (a cell may span lines)."""
  text = (ROOT / "docs" / "guides" / "compressors.rst").read_text()
  table = text.split("The compressors", 1)[1].split(".. list-table::", 1)[1]
  rows, cell = [], None
  for line in table.splitlines()[1:]:
    if line.startswith("   * - ") or line.startswith("     - "):
      if line.startswith("   * - "):
        rows.append([])
      cell = [line[7:].strip()]
      rows[-1].append(cell)
    elif line.startswith("       ") and cell is not None:
      cell.append(line.strip())
    elif line.strip() and not line.startswith("   :") and rows:
      break
  return [tuple(" ".join(c) for c in row) for row in rows[1:]]  # no header


def _normal(cell: str) -> str:
  """A cell without markup, spaces or unicode maths: ``k*(32+32)``."""
  for old, new in (("``", ""), ("`", ""), ("\\|", "|"), (" ", ""),
                   ("·", "*"), ("⌈", "ceil("), ("⌉", ")"), ("real", "")):
    cell = cell.replace(old, new)
  return cell


def _formula(bits_cell: str) -> str:
  """The bits formula of a cell: the guide's first literal, README's cell."""
  literal = re.search(r"``(.+?)``", bits_cell)
  return _normal(literal.group(1) if literal else bits_cell)


def _case(factory_cell: str) -> str:
  name = _normal(factory_cell).split("(")[0]
  if name == "hard_threshold" and "budget=" in factory_cell:
    return "hard_threshold budgeted"
  return name


@pytest.mark.slow
@pytest.mark.parametrize("table", [_readme_table, _guide_table],
                         ids=["README", "guide"])
def test_compressor_table_bits_match_the_code(table):
  rows = table()
  assert sorted({_case(r[0]) for r in rows}) == sorted(_TABLE_CASES)
  assert {_case(r[0]).split()[0] for r in rows} == set(sj.COMPRESSORS)
  for row in rows:
    make, x, variables = _TABLE_CASES[_case(row[0])]
    c = make()
    message, _ = c.encode(x, c.init(x))
    nnz = sum(int(jnp.count_nonzero(d)) for d in jax.tree.leaves(
        sj.decode(message)))
    n = sum(v.size for v in jax.tree.leaves(x))
    expected = eval(_formula(row[2]), {"ceil": math.ceil, "log2": math.log2},  # pylint: disable=eval-used
                    {"k": nnz, "nnz": nnz, "n": n, "s": _LEVELS,
                     **variables})
    bits = sj.exact(sj.compress.message_size(message)[1])
    assert bits == expected, (row[0], row[2], bits)
    if _case(row[0]) == "cost_weighted":
      assert "|x|^p/c" in _normal(row[1])


def test_readme_and_guide_tables_list_the_same_compressors():
  assert ([_normal(r[0]) for r in _readme_table()]
          == [_normal(r[0]) for r in _guide_table()])


def _class_cell(name: str) -> str:
  return next(r[3] for r in _guide_table() if _case(r[0]) == name)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n == "random_k" else n
    for n in sorted(_TABLE_CASES)])
def test_guide_contractive_and_unbiased_entries_hold(name):
  """``contractive``: ``||x - C(x)|| < ||x||`` (on average for a random
  compressor); ``unbiased``: the mean of 2000 draws is ``x`` within 5
  standard errors. ``random_k`` is checked unscaled (contractive) and
  scaled (unbiased), as its cell says."""
  cell = _class_cell(name)
  make, _, _ = _TABLE_CASES[name]
  rng = np.random.default_rng(0)
  x = {"w": jnp.asarray(rng.normal(size=(20, 10)), jnp.float32)}
  draws = 2000 if name in ("random_k", "qsgd", "terngrad",
                           "natural_compression") else 1
  makes = ({"contractive": lambda: sj.random_k(0.1),
            "unbiased": lambda: sj.random_k(0.1, scaled=True)}
           if name == "random_k" else {"": make})

  for kind, factory in makes.items():
    c = factory()

    def body(state, _, c=c):
      out, state = c.update(x, state)
      return state, out["w"]

    _, outs = jax.lax.scan(body, c.init(x), None, length=draws)
    outs = np.asarray(outs, np.float64)
    w = np.asarray(x["w"], np.float64)
    if "contractive" in cell and kind != "unbiased":
      err = np.mean(np.sum((outs - w) ** 2, axis=(1, 2)))
      assert err < np.sum(w ** 2), (name, err)
    if "unbiased" in cell and kind != "contractive":
      se = outs.std(axis=0) / np.sqrt(draws) + 1e-6
      assert np.all(np.abs(outs.mean(axis=0) - w) <= 5 * se), name
  assert "contractive" in cell or "unbiased" in cell or "neither" in cell or (
      "biased" in cell), (name, cell)


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
