"""The package's layers: no import cycles, no import of a higher layer, and a
core that loads no experiment dependency.

Layers (BUILD_NOTES.md, "Design decisions: layers"), lowest first::

  kernels <- compress <- feedback <- parallel <- federated <- models, data, training

Every import inside ``sparsejax`` is read from the source (function-level
imports included), so a lazy import cannot hide a cycle or an upward arrow.
"""

import ast
import os
import subprocess
import sys

import pytest

import sparsejax

ROOT = os.path.dirname(sparsejax.__file__)

LAYERS = {
    "sparsejax.kernels": 0,
    "sparsejax.compress": 1,
    "sparsejax.feedback": 2,
    "sparsejax.parallel": 3,
    "sparsejax.federated": 4,
    "sparsejax.models": 5,
    "sparsejax.data": 5,
    "sparsejax.training": 5,
}

# Imported by ``import sparsejax`` never (experiment support, or heavy).
OPTIONAL = ("orbax", "matplotlib", "tensorflow", "tensorflow_datasets",
            "ml_collections", "PIL", "flax")


def _module_name(path):
  rel = os.path.relpath(path, os.path.dirname(ROOT))[:-len(".py")]
  parts = rel.split(os.sep)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def _modules():
  found = {}
  for dirpath, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(dirpath, f)
        found[_module_name(path)] = path
  return found


def _imports(name, path, modules):
  """The ``sparsejax`` modules that module ``name`` imports (any nesting)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) -
                                              node.level + 1] + [base]).strip(".")
      # ``from pkg import mod`` imports a module; ``from mod import name`` not.
      targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    else:
      continue
    out.update(t for t in targets if t in modules and t != name)
  return out


def _graph():
  modules = _modules()
  return {name: _imports(name, path, modules)
          for name, path in modules.items()}


def _layer(module):
  for prefix, layer in LAYERS.items():
    if module == prefix or module.startswith(prefix + "."):
      return prefix, layer
  return None, None


def _cycles(graph):
  """Strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_cycle_finder_finds_a_cycle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert _cycles(graph) == [["a", "b", "c"]]
  assert not _cycles({"a": {"b"}, "b": set()})


def test_relative_and_nested_imports_are_read(tmp_path):
  pkg = tmp_path / "sparsejax" / "compress"
  pkg.mkdir(parents=True)
  mod = pkg / "x.py"
  mod.write_text("def f():\n  from . import y\n  from ..feedback import z\n")
  modules = {"sparsejax.compress.y": "", "sparsejax.feedback": ""}
  got = _imports("sparsejax.compress.x", str(mod), modules)
  assert got == {"sparsejax.compress.y", "sparsejax.feedback"}


def test_no_import_cycles_inside_sparsejax():
  cycles = _cycles(_graph())
  assert not cycles, "import cycles:\n" + "\n".join(
      " -> ".join(c) for c in cycles)


def test_every_module_imports_only_its_layer_or_below():
  graph = _graph()
  wrong = []
  for module, targets in sorted(graph.items()):
    if module == "sparsejax":
      continue  # the facade re-exports every layer
    package, layer = _layer(module)
    assert package is not None, (
        f"{module} belongs to no layer: add it to LAYERS in this test and to "
        "the diagram in BUILD_NOTES.md")
    for target in sorted(targets):
      if target == "sparsejax":
        wrong.append(f"{module} imports the facade 'sparsejax'")
        continue
      target_package, target_layer = _layer(target)
      if target_layer > layer or (target_layer == layer
                                  and target_package != package
                                  and layer < max(LAYERS.values())):
        wrong.append(f"{module} (layer {layer}) imports {target} "
                     f"(layer {target_layer})")
  assert not wrong, "\n".join(wrong)


@pytest.mark.slow
@pytest.mark.parametrize("statement", [
    "import sparsejax",
    "import sparsejax as sj; import optax; optax.chain("
    "sj.error_feedback(sj.top_k(0.1)), optax.sgd(0.1))",
    "import sparsejax.parallel",
])
def test_core_loads_no_optional_dependency(statement):
  code = (f"{statement}\nimport sys\n"
          f"print(sorted(m for m in sys.modules "
          f"if m.split('.')[0] in {OPTIONAL!r}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, cwd=os.path.dirname(ROOT))
  assert out.stdout.strip() == "[]", (
      f"`{statement}` loaded {out.stdout.strip()}")


@pytest.mark.slow
def test_experiment_support_is_loaded_on_first_use():
  code = ("import sys, sparsejax as sj\n"
          "assert 'sparsejax.models' not in sys.modules\n"
          "sj.models.MLP\n"
          "assert 'sparsejax.models' in sys.modules\n"
          "print('ok')")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, cwd=os.path.dirname(ROOT))
  assert out.stdout.strip() == "ok"
  with pytest.raises(AttributeError, match="no attribute 'modelz'"):
    sparsejax.modelz  # pylint: disable=pointless-statement
