"""Sphinx configuration of the pyrovae documentation site.

Build (offline, warnings are errors, nitpicky cross-references)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -n docs docs/_build/html

The API, families, spec and CLI references are generated at build time from the code
(``docs/_ext/pyrovae_refs.py``), so they cannot drift from it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

project = "pyrovae"
author = "the pyrovae developers"
copyright = "2024-2026, the pyrovae developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: math renders offline
    "myst_nb",
    "pyrovae_refs",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

# one docstring convention for the whole package: Google style
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# undoc-members: a public method without a docstring is rendered, and so fails the
# build (docs/_ext/pyrovae_refs.py: check_docstring)
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": False}

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# executed notebooks (the tutorial and the gallery): run at every build, a raising cell
# fails the build
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# progress bars and their "no ipywidgets" notices are not part of the story
nb_output_stderr = "remove"

html_theme = "furo"
html_title = "pyrovae"
html_static_path: list[str] = []

# No intersphinx (the build is offline): references to torch, Pyro, NumPy and the
# standard library are not linked; every reference to pyrovae must resolve.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|pyro|numpy|np|scipy|matplotlib|arviz|yaml|argparse|collections|"
               r"typing|pathlib|os|io|dataclasses|abc|enum|json|concurrent)(\..*)?"),
    (r"py:.*", r"(Tensor|Path|Figure|Axes|Any|Callable|Iterable|Iterator|Mapping|Sequence|"
               r"Generator|Module|Distribution|PyroModule|PathLike|ndarray|Optimizer|"
               r"Literal|Self|TextIO|BinaryIO|Protocol)"),
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|set|bytes|object|type|None|"
               r"callable|optional|function|iterable|mapping|sequence|array|Ellipsis)"),
]
