"""The import graph: layers point one way, no cycles (docs/architecture.md).

Every ``import`` in the package counts, also those inside functions: a lazy
import from a higher layer is still an upward dependency.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pyrovae

PACKAGE = Path(pyrovae.__file__).parent

#: layer of each top-level module or sub-package, lowest first
LAYERS: dict[str, int] = {
    "errors": 0,
    "registry": 1, "io": 1, "quadrature": 1, "randomness": 1, "frozen": 1,
    "progress": 1,
    "data": 2, "plots": 2,
    "model": 3,
    "estimators": 4,
    "training": 5,
    "posterior": 6, "toy": 6,
    "experiments": 7,
    "runs": 8,
    "cli": 9, "__main__": 10,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            # "from pyrovae.x import y": y is a submodule or a name defined in pyrovae.x
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m == "pyrovae" or m.startswith("pyrovae.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imp in _imports(path):
            # resolve "pyrovae.a.b.Name" to the longest existing module prefix
            parts = imp.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def _layer(module: str) -> tuple[str, int]:
    top = module.split(".")[1] if "." in module else ""
    return top, LAYERS.get(top, -1)


def test_every_top_level_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert tops - set(LAYERS) == set(), "add the new module to LAYERS and docs/architecture.md"


def test_no_import_from_a_higher_layer_or_a_sibling():
    bad = []
    for module, targets in _graph().items():
        if module == "pyrovae":  # the lazy public facade
            continue
        top, rank = _layer(module)
        for target in targets:
            ttop, trank = _layer(target)
            if target == "pyrovae":
                bad.append(f"{module} -> pyrovae (import from the defining module instead)")
            elif trank > rank or (trank == rank and ttop != top):
                bad.append(f"{module} (layer {rank}) -> {target} (layer {trank})")
    assert bad == []


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    # a package __init__ importing its own submodules is not a cycle of ideas
    cycles = [c for c in cycles
              if not all(p.startswith(c.split(" -> ")[0]) for p in c.split(" -> "))]
    assert cycles == []


@pytest.mark.parametrize("name", pyrovae.__all__)
def test_every_public_name_imports(name):
    assert getattr(pyrovae, name) is not None


def test_subpackages_are_attributes():
    for name in ("posterior", "toy", "model", "training", "runs"):
        assert getattr(pyrovae, name) is importlib.import_module(f"pyrovae.{name}")


def _heavy_modules_after(code: str) -> set[str]:
    import subprocess
    import sys

    probe = (f"import sys\n{code}\n"
             "print(' '.join(m for m in ('torch', 'pyro', 'matplotlib', 'arviz', 'sklearn',"
             " 'mlxtend') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return set(out.split())


def test_import_pyrovae_loads_no_heavy_dependency():
    assert _heavy_modules_after("import pyrovae") == set()


def test_cli_help_and_version_load_no_heavy_dependency():
    code = ("from pyrovae.cli import main\n"
            "import contextlib, io\n"
            "for argv in (['--help'], ['--version']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit:\n"
            "            pass")
    assert _heavy_modules_after(code) == set()


def test_cli_mistyped_flag_value_is_refused_before_torch_is_imported():
    code = ("from pyrovae.cli import main\n"
            "import contextlib, io\n"
            "err = io.StringIO()\n"
            "with contextlib.redirect_stderr(err):\n"
            "    try:\n"
            "        main(['families', '--kind', 'priors'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 2, e.code\n"
            "assert \"invalid choice: 'priors'\" in err.getvalue(), err.getvalue()")
    assert _heavy_modules_after(code) == set()


def test_registries_from_the_facade_hold_every_family():
    code = ("import pyrovae\n"
            "print(len(pyrovae.PRIORS.names()), len(pyrovae.GUIDES.names()),"
            " len(pyrovae.OBJECTIVES.names()), len(pyrovae.NETWORKS.names()))")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert all(int(n) >= 2 for n in out), out
