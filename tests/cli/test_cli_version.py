"""``pyrovae --version`` prints the installed versions and exits 0."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from pyrovae.cli import main


def test_version_names_pyrovae_torch_pyro_and_python(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"pyrovae {version('pyrovae')} (")
    assert f"torch {version('torch')}" in out and f"pyro {version('pyro-ppl')}" in out
    assert re.search(r"Python \d+\.\d+\.\d+\)$", out)
