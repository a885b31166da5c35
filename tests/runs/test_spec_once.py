"""A spec is validated once, where it enters, and travels as a typed ``Spec`` (#17):
the VAE builder, the trainer, the run folder and the checks take it as it is."""

import collections
import copy
import json
import pickle

import pytest
import torch
import yaml

import pyrovae.model.spec as model_spec
from pyrovae.errors import PyrovaeError
from pyrovae.model.spec import ModelSpec, normalize_model_spec
from pyrovae.model.vae import VAE
from pyrovae.registry import PRIORS, Registry
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline
from pyrovae.runs.spec import Spec, normalize_spec
from pyrovae.training.config import TRAIN_PARAMS, TrainConfig

RAW = {"latent_dim": 2, "encoder": {"hidden": [16]}, "data": {"name": "digits"},
       "train": {"epochs": 1, "batch_size": 256, "checkpoint_every": 1},
       "eval": {"num_samples": 4}}


@pytest.fixture
def counts(monkeypatch):
    """How often each family entry (by spec key) and the model part are validated."""
    seen: collections.Counter = collections.Counter()
    normalize = Registry.normalize

    def counted(self, entry, path=None):
        seen[path] += 1
        return normalize(self, entry, path)

    monkeypatch.setattr(Registry, "normalize", counted)
    whole = model_spec.normalize_model_spec

    def model_part(*args, **kwargs):
        seen["model part"] += 1
        return whole(*args, **kwargs)

    monkeypatch.setattr(model_spec, "normalize_model_spec", model_part)
    return seen


def test_train_then_load_validate_each_entry_once(tmp_path, counts):
    pipeline.train_run(RAW, tmp_path / "run", progress=False)
    # the likelihood twice: the spec's default, then the one the data decide (binary: no)
    assert counts == {"model": 1, "encoder": 1, "prior": 1, "likelihood": 2, "guide": 1,
                      "context": 1, "objective": 1, "kl_weight": 1}
    counts.clear()
    vae, spec, _ = runs.load_run(tmp_path / "run", history=False)
    assert isinstance(spec, Spec) and counts["model part"] == 0
    assert set(counts.values()) == {1}  # spec.yaml read: each entry once, none again
    assert vae.spec == spec.model_spec.as_dict()


def test_a_resume_validates_the_run_spec_and_the_given_spec_once_each(tmp_path, counts,
                                                                     monkeypatch):
    pipeline.train_run(RAW, tmp_path / "run", progress=False)
    counts.clear()
    made = []
    monkeypatch.setattr(TrainConfig, "from_section",
                        classmethod(lambda cls, section: made.append(1) or cls(**{
                            k: v for k, v in section.items() if k in TRAIN_PARAMS})))
    longer = {**RAW, "train": {**RAW["train"], "epochs": 2}}
    pipeline.resume_run(tmp_path / "run", longer, progress=False)
    # spec.yaml once, the given spec once (its decoder is the encoder's mirror, not an
    # entry); the likelihood again as the data decide it
    assert counts == {"model": 2, "encoder": 2, "decoder": 1, "prior": 2, "likelihood": 3,
                      "guide": 2, "context": 2, "objective": 2, "kl_weight": 2}
    assert len(made) == 1  # the train section made into a TrainConfig once


def test_a_raw_mapping_is_validated_where_it_enters_and_a_spec_never_again(counts):
    spec = normalize_spec({**RAW, "data_dim": 64})
    counts.clear()
    assert normalize_spec(spec) is spec
    assert spec.train_config is spec.train_config  # each typed section made once
    assert spec.data_config.name == "digits" and spec.stopping_rule is None
    VAE.from_spec(spec)
    VAE.from_spec(spec.model_spec)
    assert counts == {}
    VAE.from_spec(spec.as_dict())  # a plain dict: validated here, once
    assert counts["model part"] == 1 and counts["encoder"] == 1


def test_a_spec_is_read_only_and_replace_validates_the_change():
    spec = normalize_spec({**RAW, "data_dim": 64})
    with pytest.raises(PyrovaeError, match=r"^train: a validated spec is read-only"):
        spec["train"]["lr"] = 1.0
    with pytest.raises(PyrovaeError, match="read-only"):
        spec["latent_dim"] = 3
    with pytest.raises(PyrovaeError, match="made by normalize_spec"):
        Spec({"latent_dim": 3})
    with pytest.raises(PyrovaeError, match="latent_dim: expected"):
        spec.replace({"latent_dim": 0})
    with pytest.raises(PyrovaeError, match=r"event_shape: .* holds 64 values, data_dim says 9"):
        spec.replace({"data_dim": 9, "event_shape": [8, 8]})
    wider = spec.replace({"latent_dim": 3})
    assert wider["latent_dim"] == 3 and wider.model_spec.latent_dim == 3
    assert spec["latent_dim"] == 2  # the original is unchanged


def test_a_spec_is_plain_data_on_every_way_out(tmp_path):
    spec = normalize_spec({**RAW, "data_dim": 64})
    plain = spec.as_dict()
    assert type(plain) is dict and plain == spec
    assert json.loads(json.dumps(spec)) == plain
    assert yaml.safe_load(yaml.safe_dump(spec)) == plain
    assert type(pickle.loads(pickle.dumps(spec))) is dict
    assert type(copy.deepcopy(spec)) is dict
    torch.save({"spec": spec.as_dict()}, tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True)["spec"] == plain


def test_vae_spec_is_read_off_the_built_parts():
    prior = PRIORS.build({"family": "student_t", "df": 5}, "prior", latent_dim=2)
    vae = VAE(64, 2, encoder=[16], prior=prior, likelihood={"family": "gaussian"})
    s = vae.spec
    assert s["prior"] == prior.entry == {"family": "student_t", "df": 5.0, "scale": 1.0}
    for key, part in (("encoder", vae.encoder), ("decoder", vae.decoder),
                      ("likelihood", vae.likelihood), ("guide", vae.guide_family),
                      ("context", vae.context)):
        assert s[key] == part.entry
    assert s["decoder"]["hidden"] == [16]  # the encoder's mirror image
    ms = normalize_model_spec(s)
    assert isinstance(ms, ModelSpec) and ms == s
    assert VAE.from_spec(ms).spec == s


def test_custom_modules_are_recorded_and_needed_again():
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    dec = torch.nn.Linear(2, 64)
    with pytest.raises(PyrovaeError, match="a custom encoder module needs a decoder too"):
        VAE(64, 2, encoder=enc)
    vae = VAE(64, 2, encoder=enc, decoder=dec)
    assert vae.spec["encoder"] == {"family": "custom", "module": "Sequential"}
    with pytest.raises(PyrovaeError, match=r"encoder\.family: 'custom'"):
        VAE.from_spec(vae.spec)
    again = VAE.from_spec(vae.spec, encoder=copy.deepcopy(enc), decoder=copy.deepcopy(dec))
    assert again.spec == vae.spec
