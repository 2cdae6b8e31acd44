"""Sphinx configuration of the sparsejax documentation.

Build (warnings are errors): ``bash docs/build.sh``, or by hand::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W -b doctest docs docs/_build/doctest
"""

import inspect
import os
import sys

# Four host devices on a CPU for the data-parallel examples. Must be set
# before jax is imported (autodoc imports it); no effect on GPU/TPU devices.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=4").strip()

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))  # the repository root

import sparsejax  # pylint: disable=g-import-not-at-top,wrong-import-position
from sphinx.util.nodes import make_refnode  # pylint: disable=g-import-not-at-top,wrong-import-position

project = "sparsejax"
author = "sparsejax authors"
copyright = "2026, sparsejax authors"  # pylint: disable=redefined-builtin
version = release = sparsejax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    # A local MathJax 3 (the [docs] extra): copied to _static/mathjax and set
    # as mathjax_path, so the maths renders offline, without a CDN.
    "sphinx-mathjax-offline",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build"]
# Markdown files (BUILD_NOTES.md) are literalincluded, not parsed as pages.
source_suffix = {".rst": "restructuredtext"}

# -- autodoc / napoleon ------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Not autodoc_preserve_defaults: it rewrites the live functions' default values,
# which then break the doctests that run in the same process.
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as :ivar: fields, no duplicate targets

# -- doctest -------------------------------------------------------------------
# Docstring examples (>>> blocks) and the guides' testcode blocks both run.
doctest_global_setup = """
import jax
import jax.numpy as jnp
import numpy as np
import optax
import sparsejax as sj
"""
trim_doctest_flags = True

# -- html ----------------------------------------------------------------------
try:
  import furo  # noqa: F401  pylint: disable=unused-import
  html_theme = "furo"
except ImportError:
  html_theme = "alabaster"
html_title = f"sparsejax {release}"


def _drop_builtin_docstrings(app, what, name, obj, options, lines):
  """A constant without a doc comment inherits its type's docstring (dict,
  tuple): drop it, the page describes the constant itself."""
  del app, name, options
  if what in ("data", "attribute") and type(obj).__doc__ and (
      "\n".join(lines).split() == inspect.cleandoc(type(obj).__doc__).split()):
    lines.clear()


def _resolve_short_names(app, env, node, contnode):
  """Links a docstring reference written relative to its private module
  (``client_sums``, ``reference.top_k_select_reference``,
  ``sparsejax.compress.messages.SparseMessage``) to the one public
  object of that (last) name, when there is exactly one."""
  if node.get("refdomain") != "py":
    return None
  target = node["reftarget"]
  objects = env.get_domain("py").objects
  found = []
  for suffix in dict.fromkeys((target, target.rpartition(".")[2])):
    found = [name for name in objects
             if name == suffix or name.endswith("." + suffix)]
    if found:
      break
  if len(found) != 1:
    return None
  docname = objects[found[0]].docname
  return make_refnode(app.builder, node["refdoc"], docname,
                      objects[found[0]].node_id, contnode, found[0])


def setup(app):
  app.connect("autodoc-process-docstring", _drop_builtin_docstrings)
  app.connect("missing-reference", _resolve_short_names)
