"""Every training option is declared once, by TrainConfig's fields: the spec schema, fit's
signature, the CLI and the generated docs reference all carry the same defaults."""

from __future__ import annotations

import inspect
from dataclasses import fields

from pyrovae.registry import Param
from pyrovae.runs.spec import SECTIONS, normalize_spec
from pyrovae.training.config import TRAIN_PARAMS, TrainConfig
from pyrovae.training.trainer import fit


def test_train_params_are_the_fields_metadata():
    assert list(TRAIN_PARAMS) == [f.name for f in fields(TrainConfig)]
    for f in fields(TrainConfig):
        p = f.metadata["param"]
        assert isinstance(p, Param) and p is TRAIN_PARAMS[f.name]
        assert f.default == p.default, f.name


def test_spec_schema_fit_and_trainconfig_defaults_agree():
    spec_train = normalize_spec({})["train"]
    signature = inspect.signature(fit).parameters
    default = TrainConfig()
    for name, p in TRAIN_PARAMS.items():
        assert SECTIONS["train"][name] is p, name  # the spec uses the same declaration
        assert spec_train[name] == p.default, name
        assert signature[name].default == p.default, name
        assert getattr(default, name) == p.default, name


def test_cli_train_flags_leave_defaults_to_the_spec():
    """`pyrovae train`'s option flags default to None: the spec's (TrainConfig's) value
    applies unless the flag is given."""
    import argparse

    from pyrovae.cli import train as cli_train

    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train"])
    for flag in ("epochs", "seed", "device"):
        assert getattr(args, flag) is None, flag


def test_trainconfig_from_a_spec_section_round_trips():
    section = normalize_spec({"train": {"epochs": 7, "lr": 0.01}})["train"]
    c = TrainConfig.from_section(section)
    assert c.epochs == 7 and c.lr == 0.01 and c.as_kwargs()["batch_size"] == 128
