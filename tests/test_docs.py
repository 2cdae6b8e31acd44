"""The API reference (docs/api/*.rst) covers every public name, documented.

Public names: ``sparsejax.__all__`` and the ``__all__`` of each subpackage
(every non-module attribute without a leading underscore where a subpackage
has no ``__all__``). A name is covered when an ``auto*`` directive of the API
pages names it, and documented when it has its own docstring (a function or a
class) or, for a constant, a ``#:`` doc comment or docstring in its module or
a description under its directive. Parsing the rst keeps this fast; the
Sphinx build (docs/build.sh) checks the rest.
"""

import ast
import importlib
import inspect
import pathlib
import re

import pytest

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
