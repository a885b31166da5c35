"""pyrovae.frozen: read-only views of validated values."""

import copy
import json
import pickle

import pytest
import yaml

from pyrovae.errors import PyrovaeError
from pyrovae.frozen import FrozenDict, FrozenList, freeze, thaw

PLAIN = {"train": {"lr": 0.001, "betas": [0.9, 0.999]}, "track": ["csv"], "latent_dim": 2}


def test_a_view_equals_the_plain_value_and_refuses_every_change_naming_the_key():
    view = freeze(PLAIN)
    assert view == PLAIN and isinstance(view["train"], FrozenDict)
    assert isinstance(view["train"]["betas"], FrozenList)
    changes = [lambda: view.__setitem__("latent_dim", 3),
               lambda: view["train"].update(lr=1.0),
               lambda: view["train"].pop("lr"),
               lambda: view["train"]["betas"].append(1.0),
               lambda: view["train"]["betas"].__setitem__(0, 0.5),
               lambda: view["track"].sort()]
    for change in changes:
        with pytest.raises(PyrovaeError, match="read-only"):
            change()
    with pytest.raises(PyrovaeError, match=r"spec\.train\.betas: a validated spec is read-only"):
        view["train"]["betas"].extend([1])
    assert view == PLAIN  # nothing changed


def test_copies_and_serialisations_are_plain_and_mutable():
    view = freeze(PLAIN, "spec")
    for out in (copy.deepcopy(view), copy.copy(view), pickle.loads(pickle.dumps(view)),
                thaw(view)):
        assert out == PLAIN and type(out) is dict and type(out["train"]) is dict
        assert type(out["train"]["betas"]) is list
        out["train"]["lr"] = 1.0  # a copy is the user's to change
    assert view["train"]["lr"] == 0.001
    assert json.loads(json.dumps(view)) == PLAIN
    assert yaml.safe_load(yaml.safe_dump(view)) == PLAIN


def test_freeze_copies_its_input():
    raw = copy.deepcopy(PLAIN)
    view = freeze(raw)
    raw["train"]["lr"] = 5.0
    assert view["train"]["lr"] == 0.001
