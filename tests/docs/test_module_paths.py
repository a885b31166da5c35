"""No docstring, page or example names a pyrovae module path that does not import.

Every dotted ``pyrovae.x.y`` path written in the package's source (docstrings and
comments), the Markdown pages, the README and the examples must resolve: a module, or
attributes below one.  File paths under ``tests/``, ``pyrovae/``, ``examples/`` and
``benchmarks/`` must exist.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOTTED = re.compile(r"(?<![\w./-])pyrovae(?:\.[A-Za-z_]\w*)+")
# examples/ is flat here; a deeper examples/ path names another project's (Pyro's) file
TEST_FILE = re.compile(r"(?<![\w./-])(?:(?:tests|pyrovae|benchmarks)/[\w/]+|examples/\w+)\.py")


def _texts() -> list[Path]:
    files = sorted((ROOT / "pyrovae").rglob("*.py")) + sorted((ROOT / "docs").glob("*.md"))
    files += [*sorted((ROOT / "examples").glob("*.py")), ROOT / "README.md"]
    return [f for f in files if "_build" not in f.parts and "_generated" not in f.parts]


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                # a file name such as ``pyrovae.yaml`` or a method of an instance
                return attr in ("py", "yaml", "yml", "toml", "json", "md")
            obj = getattr(obj, attr)
        return True
    return False


def _paths() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in _texts():
        text = f.read_text(encoding="utf-8")
        for m in DOTTED.finditer(text):
            path = m.group(0).rstrip(".")
            found.setdefault(path, []).append(str(f.relative_to(ROOT)))
    return found


def test_the_scan_finds_paths() -> None:
    paths = _paths()
    assert "pyrovae.runs.pipeline" in paths or "pyrovae.runs.spec" in paths
    assert not _resolves("pyrovae.posterior.grid.GridPosterior")
    assert _resolves("pyrovae.quadrature.GridPosterior")


@pytest.mark.parametrize("path", sorted(_paths()))
def test_dotted_path_imports(path: str) -> None:
    assert _resolves(path), f"{path} does not import (named in {sorted(set(_paths()[path]))})"


def test_named_test_files_exist() -> None:
    missing = {}
    for f in _texts():
        for m in TEST_FILE.finditer(f.read_text(encoding="utf-8")):
            if not (ROOT / m.group(0)).is_file():
                missing.setdefault(m.group(0), []).append(str(f.relative_to(ROOT)))
    assert not missing, f"test files named but absent: {missing}"
