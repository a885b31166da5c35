"""Every section of options is declared once, by a typed Section's fields: the spec schema,
the typed object, the CLI flags of ``pyrovae check``, ``check_vae``'s defaults and the
generated docs reference carry the same declarations and defaults."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re

import pytest

from pyrovae.data.config import DataConfig
from pyrovae.errors import PyrovaeError
from pyrovae.registry import Section, params_of
from pyrovae.runs import sections
from pyrovae.runs.check import check_label_vae, check_vae
from pyrovae.runs.sections import CheckBudget, CheckpointPolicy, EvalConfig
from pyrovae.runs.spec import SECTIONS, normalize_spec
from pyrovae.training.config import TrainConfig
from pyrovae.training.stopping import EARLY_STOPPING_PARAMS, EarlyStopping
from tests.training.test_config_defaults import _refs

#: spec section -> the class whose fields declare it
SPEC_SECTIONS: dict[str, type[Section]] = {
    "train": TrainConfig, "data": DataConfig, "eval": EvalConfig,
    "checkpoint": CheckpointPolicy, "early_stopping": EarlyStopping,
}


def _check_parser() -> argparse.ArgumentParser:
    from pyrovae.cli import check as cli_check

    parser = argparse.ArgumentParser()
    cli_check.register(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("key", list(SPEC_SECTIONS))
def test_spec_section_is_read_off_its_class(key, tmp_path):
    cls = SPEC_SECTIONS[key]
    declared = params_of(cls)
    spec = normalize_spec({})[key]
    obj = cls()
    for name, p in declared.items():
        assert SECTIONS[key][name] is p, name  # the same declaration, not a copy
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        assert f.default == p.default, name
        expected = p.validate(p.default, name)
        assert spec[name] == expected and getattr(obj, name) == expected, name
    extra = set(SECTIONS[key]) - set(declared)
    assert extra <= {"checkpoint_every", "enabled"}, extra  # the spec's own additions
    if key != "early_stopping":  # its spec section has `enabled`, which the object lacks
        back = cls.from_section(spec)
        assert back == obj
    _refs().write_spec(tmp_path)
    table = (tmp_path / "spec.md").read_text(encoding="utf-8").split(f"## `{key}`", 1)[1]
    table = table.split("\n## ", 1)[0]
    documented = {m[1]: json.loads(m[2]) for m in
                  re.finditer(r"^\| `(\w+)` \| [^|]+ \| `([^`]*)` \|", table, re.M)}
    for name, p in SECTIONS[key].items():
        assert documented[name] == p.validate(p.default, name), (key, name)


def test_early_stopping_section_is_enabled_plus_the_fields():
    assert list(EARLY_STOPPING_PARAMS) == ["enabled", *params_of(EarlyStopping)]
    assert EarlyStopping.from_section(normalize_spec({})["early_stopping"]) is None
    es = EarlyStopping.from_section({"enabled": True, "patience": 3})
    assert es == EarlyStopping(patience=3)


def test_sections_validate_on_creation_naming_the_key():
    with pytest.raises(PyrovaeError, match=r"^data\.split_seed: expected an integer in \[0"):
        DataConfig(split_seed=-1)
    with pytest.raises(PyrovaeError, match=r"^data\.transform: expected one of"):
        DataConfig(transform="log")
    with pytest.raises(PyrovaeError, match=r"^eval\.num_samples: expected an integer in \[1, "):
        EvalConfig(num_samples=sections.MAX_NUM_SAMPLES + 1)
    with pytest.raises(PyrovaeError, match=r"^checkpoint\.keep: expected a positive integer"):
        CheckpointPolicy(keep=0)
    with pytest.raises(PyrovaeError, match=r"^early_stopping\.mode: expected one of"):
        EarlyStopping(mode="up")
    with pytest.raises(PyrovaeError, match=r"^x\.ais_chains: expected a positive integer"):
        CheckBudget.build({"ais_chains": 0}, lambda n: f"x.{n}")
    with pytest.raises(PyrovaeError, match=r"^--nope: unknown option; known options: points"):
        CheckBudget.build({"nope": 1}, lambda n: f"--{n}")
    # the spec's sections report their key path through the same declarations
    with pytest.raises(PyrovaeError, match=r"^checkpoint\.every: expected a non-negative"):
        normalize_spec({"checkpoint": {"every": -1}})


def test_check_budget_rules_across_fields():
    assert CheckBudget(sbc_sims=0).sbc_sims == 0
    for kwargs, where in (({"sbc_sims": 5}, "sbc_sims"), ({"samples": 99}, "samples"),
                          ({"collapse_points": 1}, "collapse_points"),
                          ({"certified": True, "ais_steps": 100, "max_ais_steps": 50},
                           "max_ais_steps"),
                          ({"certified": True, "bdmc_points": 0}, "certified")):
        with pytest.raises(PyrovaeError, match=rf"^{where}: "):
            CheckBudget(**kwargs)
    # outside the certified mode its own bounds do not apply
    assert CheckBudget(ais_steps=100, max_ais_steps=50, bdmc_points=0).bdmc_points == 0


def test_check_flags_and_check_vae_defaults_are_the_budget_fields():
    from pyrovae.cli.check import budget_of

    parser = _check_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    check = sub.choices["check"]
    args = parser.parse_args(["check", "ppca"])
    assert budget_of(args) == CheckBudget()  # the flags' defaults are the budget's
    helps = {a.dest: a.help for a in check._actions}
    signature = {**inspect.signature(check_vae).parameters}
    label_signature = inspect.signature(check_label_vae).parameters
    as_keyword = {"samples": "num_samples"}
    for name, p in sections.CHECK_PARAMS.items():
        assert getattr(args, name) == p.default, name
        assert p.doc in helps[name], name
        keyword = as_keyword.get(name, name)
        if keyword in signature:
            assert signature[keyword].default == p.default, name
        if keyword in label_signature:
            assert label_signature[keyword].default == p.default, name
    given = parser.parse_args(["check", "ppca", "--ais-steps", "7", "--certified",
                               "--max-ais-steps", "70", "--ais-time-limit", "3.5"])
    b = budget_of(given)
    assert (b.ais_steps, b.certified, b.max_ais_steps, b.ais_time_limit) == (7, True, 70, 3.5)


def test_devices_are_one_param_kind():
    """``train.device`` (and every device option) is the Param kind ``device``: a torch
    device name, checked at the door; whether it exists is checked where it is used."""
    from pyrovae.registry import Param
    from pyrovae.training.config import TRAIN_PARAMS

    assert TRAIN_PARAMS["device"].kind == "device"
    p = Param("device", None, nullable=True)
    for good in ("cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert p.validate(good, "d") == good
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "", 0, "cpu ", "cuda:0:1"):
        with pytest.raises(PyrovaeError, match=r"^d: expected a torch device name"):
            p.validate(bad, "d")
    with pytest.raises(PyrovaeError, match=r"^train\.device: expected a torch device name"):
        normalize_spec({"train": {"device": "tpu"}})
    assert normalize_spec({"train": {"device": "cuda:1"}})["train"]["device"] == "cuda:1"
