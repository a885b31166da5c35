"""Every training option is declared once, by TrainConfig's fields: the spec schema, fit's
signature, the CLI flags, ``pyrovae families``' spec listing and the generated docs
reference all carry the same defaults."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.registry import SEED_MAX, Param, check_seed
from pyrovae.runs.spec import SECTIONS, normalize_spec
from pyrovae.training.config import TRAIN_PARAMS, TrainConfig, num_threads
from pyrovae.training.trainer import Trainer, fit

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _refs():
    """docs/_ext/pyrovae_refs.py, whose writers need only sphinx's logger: without the
    docs extra (the suite's main pass) a stand-in logger is given while the module
    loads, and taken out of ``sys.modules`` again (scipy.stats, imported later by
    sklearn, reads sphinx's autodoc whenever a module named ``sphinx`` is loaded), so the
    documented defaults are still compared here."""
    import logging
    import sys
    import types
    from unittest import mock

    stand_in: dict[str, object] = {}
    if "sphinx" not in sys.modules and importlib.util.find_spec("sphinx") is None:
        util = types.ModuleType("sphinx.util")
        util.logging = types.SimpleNamespace(getLogger=logging.getLogger)
        sphinx = types.ModuleType("sphinx")
        sphinx.util = util
        stand_in = {"sphinx": sphinx, "sphinx.util": util, "sphinx.util.logging": util.logging}
    spec = importlib.util.spec_from_file_location("pyrovae_refs_cfg",
                                                  ROOT / "docs" / "_ext" / "pyrovae_refs.py")
    mod = importlib.util.module_from_spec(spec)
    with mock.patch.dict(sys.modules, stand_in):
        spec.loader.exec_module(mod)
    return mod


def _train_parser() -> argparse.ArgumentParser:
    from pyrovae.cli import train as cli_train

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli_train.register(sub)
    return sub.choices["train"]


def test_train_params_are_the_fields_metadata():
    assert list(TRAIN_PARAMS) == [f.name for f in fields(TrainConfig)]
    for f in fields(TrainConfig):
        p = f.metadata["param"]
        assert isinstance(p, Param) and p is TRAIN_PARAMS[f.name]
        assert f.default == p.default, f.name


def test_schema_fit_trainconfig_cli_and_docs_defaults_agree(tmp_path):
    spec_train = normalize_spec({})["train"]
    signature = inspect.signature(fit).parameters
    default = TrainConfig()
    parser = _train_parser()
    cli_defaults = vars(parser.parse_args([]))
    helps = {a.dest: a.help for a in parser._actions}
    _refs().write_spec(tmp_path)
    doc = (tmp_path / "spec.md").read_text(encoding="utf-8")
    table = doc.split("## `train`", 1)[1].split("## ", 1)[0]
    documented = {m[1]: json.loads(m[2]) for m in
                  re.finditer(r"^\| `(\w+)` \| [^|]+ \| `([^`]*)` \|", table, re.M)}
    from pyrovae.cli import train as cli_train

    assert set(cli_train.TRAIN_FLAGS) <= set(TRAIN_PARAMS)
    for name, p in TRAIN_PARAMS.items():
        assert SECTIONS["train"][name] is p, name  # the spec uses the same declaration
        expected = p.validate(p.default, name)
        assert spec_train[name] == expected, name
        assert signature[name].default == p.default, name
        assert getattr(default, name) == expected, name
        assert documented[name] == expected, name  # JSON: a tuple default reads as a list
        if name in cli_train.TRAIN_FLAGS:
            # not given: None, so the spec's value (the same default) applies; the help
            # states that default
            assert cli_defaults[name] is None, name
            shown = "null" if p.default is None else str(p.default)
            assert f"(default: {shown}," in helps[name], name
            assert p.doc in helps[name], name


def test_cli_flags_become_train_overrides():
    from pyrovae.cli import train as cli_train

    args = _train_parser().parse_args(["--epochs", "3", "--threads", "2", "--seed", "5"])
    sets = cli_train.train_sets(args)
    assert sets == ["train.epochs=3", "train.seed=5", "train.threads=2"]
    from pyrovae.runs.spec import apply_overrides

    spec = normalize_spec(apply_overrides({}, sets))
    c = TrainConfig.from_section(spec["train"])
    assert (c.epochs, c.seed, c.threads) == (3, 5, 2)


def test_trainconfig_from_a_spec_section_round_trips():
    section = normalize_spec({"train": {"epochs": 7, "lr": 0.01}})["train"]
    c = TrainConfig.from_section(section)
    assert c.epochs == 7 and c.lr == 0.01 and c.as_kwargs()["batch_size"] == 128


def test_one_seed_check_everywhere():
    import numpy as np

    from pyrovae.estimators.evaluate import evaluate

    assert check_seed(np.int64(SEED_MAX)) == SEED_MAX
    for bad in (-1, SEED_MAX + 1, 2**70, 1.5, "3", True):
        with pytest.raises(PyrovaeError, match=r"^s: expected an integer in \[0, 4294967295\]"):
            check_seed(bad, "s")
    # the spec's seeds (train.seed, data.split_seed) and evaluate use the same range
    for key in ("train", "data"):
        name = "seed" if key == "train" else "split_seed"
        with pytest.raises(PyrovaeError, match=rf"{key}\.{name}: expected an integer in \[0"):
            normalize_spec({key: {name: SEED_MAX + 1}})
        assert normalize_spec({key: {name: SEED_MAX}})[key][name] == SEED_MAX
    with pytest.raises(PyrovaeError, match=r"^seed: expected an integer in \[0"):
        evaluate(None, torch.zeros(2, 2), seed=SEED_MAX + 1)


def test_threads_applied_while_training_and_restored():
    from pyrovae.model.vae import VAE

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    seen = []
    vae = VAE(data_dim=4, latent_dim=2, encoder=(4,))
    x = torch.bernoulli(torch.full((16, 4), 0.5))
    fit(vae, x, epochs=1, batch_size=8, threads=want, progress=False,
        callbacks=[lambda t, r: seen.append(torch.get_num_threads())])
    assert seen == [want]
    assert torch.get_num_threads() == before
    t = Trainer(vae, x, TrainConfig(epochs=1, batch_size=8, threads=None), progress=False,
                callbacks=[lambda t, r: seen.append(torch.get_num_threads())])
    t.run()
    assert seen[-1] == before  # null: torch's own setting, untouched
    with pytest.raises(PyrovaeError, match="threads: expected a positive integer or null"):
        TrainConfig(threads=0)
    with num_threads(want):
        assert torch.get_num_threads() == want
    assert torch.get_num_threads() == before
