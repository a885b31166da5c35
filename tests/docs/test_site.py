"""The documentation site builds offline with ``-W --keep-going -n`` and is complete.

One build per session (it executes the tutorial and the gallery: a few minutes on two
cores, hence slow).  Needs the ``docs`` extra; ``.ci/run`` installs it and runs this
file after the suite, so the build is checked in CI.  Then: every public name is in
the built API reference, and every registered family in the families reference.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

for _mod in ("sphinx", "myst_nb", "furo", "sphinx-mathjax-offline"):
    pytest.importorskip(_mod, reason="the docs extra is not installed (pip install -e '.[docs]')")

ROOT = Path(__file__).resolve().parents[2]
CODE = '<span class="pre">{}</span>'
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import pyrovae_refs  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q",
         "-d", str(out / "doctrees"), str(ROOT / "docs"), str(out / "html")],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
    )
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stderr[-6000:]}"
    return out / "html"


def test_every_public_name_is_in_the_api_reference(site: Path) -> None:
    api = site / "_generated" / "api"
    pages = {p.stem: p.read_text(encoding="utf-8") for p in api.glob("*.html")}
    anchors = "\n".join(pages.values())
    names = pyrovae_refs.public_names()
    assert "fit" in names["pyrovae"] and "ais" in names["pyrovae"]
    missing = []
    for ns, public in names.items():
        assert ns in pages, f"no API page for {ns}"
        for name in public:
            directive, path, _ = pyrovae_refs.canonical(ns, name)
            if directive == "module":
                continue
            if f'id="{path}"' not in anchors or CODE.format(name) not in pages[ns]:
                missing.append(f"{ns}.{name} ({path})")
    assert not missing, f"public names missing from the API reference: {missing}"


def test_every_public_object_has_a_docstring() -> None:
    bare = []
    for ns, public in pyrovae_refs.public_names().items():
        mod = importlib.import_module(ns)
        for name in public:
            obj = getattr(mod, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
                bare.append(f"{ns}.{name}")
    assert not bare, f"public names without a docstring: {bare}"


def test_every_registered_family_is_in_the_families_reference(site: Path) -> None:
    from pyrovae.runs.families import list_families

    html = (site / "_generated" / "families.html").read_text(encoding="utf-8")
    listing = list_families()
    assert listing["prior"], "no priors registered?"
    missing = [f"{kind}: {name}" for kind, fams in listing.items() for name in fams
               if f'id="{pyrovae_refs.family_label(kind, name)}"' not in html]
    assert not missing, f"families missing from the families reference: {missing}"
    for kind, fams in listing.items():
        for name, info in fams.items():
            for param in info["params"]:
                assert CODE.format(param) in html, (kind, name, param)


def test_spec_and_cli_references_cover_every_key_and_command(site: Path) -> None:
    from pyrovae.cli import COMMANDS
    from pyrovae.runs import spec

    spec_html = (site / "_generated" / "spec.html").read_text(encoding="utf-8")
    for section, params in spec.SECTIONS.items():
        assert CODE.format(section) in spec_html, section
        for key in params:
            assert CODE.format(key) in spec_html, (section, key)
    cli_html = (site / "_generated" / "cli.html").read_text(encoding="utf-8")
    for cmd in COMMANDS:
        assert f"pyrovae {cmd}" in cli_html, cmd


def test_the_tutorial_ran_and_drew_its_figures(site: Path) -> None:
    html = (site / "tutorial.html").read_text(encoding="utf-8")
    assert html.count("<img") >= 6, "the tutorial's figures are missing"
    assert "Traceback" not in html


def test_the_gallery_ran_every_example_and_drew_its_figures(site: Path) -> None:
    html = (site / "gallery.html").read_text(encoding="utf-8")
    for script in ("swap_priors_likelihoods.py", "conv_vs_mlp.py", "conditional_digits.py",
                   "theta_fixed.py", "is_my_loglik_real.py"):
        assert f"python examples/{script}" in html, script
    assert "held-out IWAE" in html and "BDMC width" in html
    assert html.count("<img") >= 5, "the gallery's figures are missing"
