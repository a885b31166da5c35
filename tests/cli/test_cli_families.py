"""``pyrovae families``: lists every registered family with its parameters."""

from __future__ import annotations

import json

import pytest

from pyrovae.cli import main
from pyrovae.registry import REGISTRIES
from pyrovae.runs.families import format_families, list_families


def test_lists_every_family_of_every_kind(capsys):
    assert main(["families"]) == 0
    out = capsys.readouterr().out
    for kind, registry in REGISTRIES.items():
        assert f"{kind}:" in out
        for name in registry.names():
            assert f"  {name}: " in out
    assert "components (a positive integer; default 10)" in out
    assert "sigma (one of 'fixed', 'shared', 'per_dim', 'predicted', 'calibrated'" in out


def test_kind_and_json(capsys):
    assert main(["families", "--kind", "prior", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["prior"]
    assert sorted(data["prior"]) == REGISTRIES["prior"].names()
    mixture = data["prior"]["mixture"]
    assert mixture["params"]["components"] == {
        "type": "a positive integer", "doc": "number of Gaussians K", "default": 10,
        "required": False,
    }
    assert mixture["doc"].startswith("Learnable mixture of Gaussians")
    assert data == list_families("prior")


def test_text_matches_the_api(capsys):
    assert main(["families", "--kind", "guide"]) == 0
    assert capsys.readouterr().out == format_families(list_families("guide"))


def test_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["families", "--kind", "priors"])
    assert info.value.code == 2
    assert "invalid choice: 'priors'" in capsys.readouterr().err


def test_list_families_api_refuses_unknown_kind():
    from pyrovae import PyrovaeError

    with pytest.raises(PyrovaeError, match="--kind: unknown kind 'x'; known: prior, likelihood"):
        list_families("x")
