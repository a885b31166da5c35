"""Network families (mlp, conv), custom nn.Modules, event shapes and the conditional VAE."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyrovae import VAE, PyrovaeError, evaluate, fit, load_dataset
from pyrovae import io as pio
from pyrovae.runs import folder as runs
from pyrovae.runs import pipeline
from pyrovae.runs.check import check_vae

EVENT = (1, 8, 8)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """120 binarised 8x8 digits, shape (120, 1, 8, 8)."""
    return load_dataset("digits").x[:120]


@pytest.fixture
def image_file(tmp_path, images) -> str:
    path = tmp_path / "digits120.npy"
    np.save(path, images.numpy())
    return str(path)


NETS = {
    "mlp": {"family": "mlp", "hidden": [16]},
    "conv": {"family": "conv", "channels": [4, 8], "hidden": [16]},
}


@pytest.mark.parametrize("family", sorted(NETS))
def test_family_builds_from_a_spec_and_trains(family, images):
    torch.manual_seed(0)
    vae = VAE.from_spec({"event_shape": list(EVENT), "latent_dim": 2, "encoder": NETS[family]})
    assert vae.spec["encoder"]["family"] == family == vae.spec["decoder"]["family"]
    assert vae.encode(images[:5]).batch_shape == (5,)
    d = vae.decode(torch.zeros(3, 5, 2))
    assert d.event_shape == EVENT and d.batch_shape == (3, 5)
    assert vae.sample(4).shape == (4, *EVENT)
    before = evaluate(vae, images, num_samples=2)["elbo"]
    fit(vae, images, epochs=3, batch_size=32, lr=3e-3, progress=False, eval_every=None)
    after = evaluate(vae, images, num_samples=2)["elbo"]
    assert after > before


@pytest.mark.parametrize("family", sorted(NETS))
def test_family_round_trips_through_a_run_folder_and_resumes(family, image_file, tmp_path):
    spec = {"latent_dim": 2, "encoder": NETS[family], "likelihood": "bernoulli",
            "train": {"epochs": 2, "batch_size": 32, "checkpoint_every": 1, "eval_every": 1},
            "data": {"name": image_file, "test_fraction": 0.25}, "eval": {"num_samples": 2}}
    whole = pipeline.train_run(spec, tmp_path / "whole", progress=False)
    saved = runs.read_spec(tmp_path / "whole" / runs.SPEC_FILE)
    assert saved["event_shape"] == list(EVENT) and saved["encoder"]["family"] == family
    vae, _, _ = runs.load_run(tmp_path / "whole")
    assert vae.event_shape == EVENT and vae.spec["decoder"]["family"] == family
    # killed after epoch 1, then resumed: bitwise the same parameters
    pipeline.train_run({**spec, "train": {**spec["train"], "epochs": 1}}, tmp_path / "cut",
                       progress=False)
    resumed = pipeline.resume_run(tmp_path / "cut", {**spec}, progress=False)
    a = pio.load_checkpoint(tmp_path / "whole" / runs.CHECKPOINT_FILE)["model"]
    b = pio.load_checkpoint(tmp_path / "cut" / runs.CHECKPOINT_FILE)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test"]["elbo"] == pytest.approx(whole["test"]["elbo"])


def test_old_encoder_section_is_an_mlp_and_the_decoder_mirrors_it():
    vae = VAE.from_spec({"data_dim": 6, "encoder": {"hidden": [9, 5], "activation": "tanh"}})
    assert vae.spec["encoder"] == {"family": "mlp", "hidden": [9, 5], "activation": "tanh"}
    assert vae.spec["decoder"] == {"family": "mlp", "hidden": [5, 9], "activation": "tanh"}
    conv = VAE.from_spec({"event_shape": [1, 8, 8], "encoder": "conv"})
    assert conv.spec["decoder"] == conv.spec["encoder"]


def test_conv_geometry_errors_are_one_line():
    with pytest.raises(PyrovaeError, match="needs image-shaped data"):
        VAE(64, encoder={"family": "conv"})
    with pytest.raises(PyrovaeError, match="shrink a 8x8 image to nothing"):
        VAE(EVENT, encoder={"family": "conv", "channels": [2, 2, 2, 2, 2]})


class TinyEncoder(nn.Module):
    """A user's own encoder: (n, 1, 8, 8) -> (n, 2·latent)."""

    def __init__(self, latent: int, out: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 64, out or 2 * latent)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class TinyDecoder(nn.Module):
    def __init__(self, latent: int) -> None:
        super().__init__()
        self.fc = nn.Linear(latent, 64)

    def forward(self, z):
        return self.fc(z)


def _custom_vae(latent: int = 2, out: int | None = None) -> VAE:
    torch.manual_seed(0)
    return VAE(EVENT, latent, encoder=TinyEncoder(latent, out), decoder=TinyDecoder(latent))


def test_custom_modules_through_fit_evaluate_check_and_stock_svi(images):
    vae = _custom_vae()
    assert vae.spec["encoder"] == {"family": "custom", "module": "TinyEncoder"}
    before = evaluate(vae, images, num_samples=4)["elbo"]
    fit(vae, images, epochs=3, batch_size=32, lr=3e-3, progress=False, eval_every=None)
    after = evaluate(vae, images, num_samples=4)["elbo"]
    assert after > before
    report, grids = check_vae(vae, images[:3], num_samples=200, amortization_steps=5)
    assert len(grids) == 3 and torch.isfinite(torch.as_tensor(report["log_px"])).all()
    pyro.clear_param_store()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    losses = [svi.step(images[:32], num_data=120) for _ in range(3)]
    assert all(np.isfinite(losses))
    assert any(k.startswith("vae$$$encoder.conv") for k in pyro.get_param_store().keys())
    with pytest.raises(PyrovaeError, match="spec cannot rebuild"):
        VAE.from_spec(vae.spec)


def test_wrong_output_shape_is_a_one_line_error_naming_both_shapes(images):
    with pytest.raises(PyrovaeError) as err:
        _custom_vae(out=5)  # the diagonal_normal guide needs 2·2 = 4 numbers
    msg = str(err.value)
    assert "\n" not in msg and "encoder" in msg
    assert "expected output shape (2, 4)" in msg and "got (2, 5)" in msg
    with pytest.raises(PyrovaeError, match=r"decoder: expected output shape \(2, 64\).*"
                                           r"got \(2, 63\)"):
        VAE(EVENT, 2, encoder=TinyEncoder(2), decoder=nn.Linear(2, 63))
    with pytest.raises(PyrovaeError, match=r"encoder: calling it with x of shape \(2, 1, 8, 8\)"):
        VAE(EVENT, 2, encoder=nn.Linear(64, 4), decoder=TinyDecoder(2))
    # a module that changes its output later is caught at the call, in one line too
    vae = _custom_vae()
    vae.encoder.fc = nn.Linear(4 * 64, 3)
    with pytest.raises(PyrovaeError, match=r"expected output shape \(3, 4\).*got \(3, 3\)"):
        vae.encode(images[:3])


def test_flat_data_reaches_an_image_vae_and_back(images):
    conv = VAE(EVENT, 2, encoder={"family": "conv", "channels": [4]})
    flat = VAE(64, 2, encoder=[8])
    for vae in (conv, flat):
        for x in (images[:6], images[:6].reshape(6, 64)):
            tr = poutine.trace(vae.model).get_trace(x)
            assert tr.nodes["x"]["value"].shape == (6, *vae.event_shape)
    with pytest.raises(PyrovaeError, match=r"data: expected shape \(n, 1, 8, 8\), got \(6, 63\)"):
        evaluate(conv, torch.zeros(6, 63))


def test_likelihood_event_dims_follow_the_event_shape():
    for fam in ("bernoulli", "gaussian", {"family": "gaussian", "sigma": "predicted"},
                {"family": "categorical", "levels": 3}, "laplace", "poisson"):
        vae = VAE(EVENT, 2, encoder={"family": "conv", "channels": [4]}, likelihood=fam)
        d = vae.decode(torch.zeros(2, 5, 2))
        assert d.event_shape == EVENT and d.batch_shape == (2, 5), fam
        assert d.log_prob(d.sample()).shape == (2, 5)


# ------------------------------------------------------------- conditional VAE
def test_conditional_vae_sites_shapes_and_sampling(images):
    torch.manual_seed(0)
    vae = VAE(EVENT, 2, encoder={"family": "conv", "channels": [4]},
              context={"family": "label", "classes": 10})
    y = torch.arange(6) % 10
    x = images[:6]
    guide_tr = poutine.trace(vae.guide).get_trace(x, y)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x, y)
    assert model_tr.nodes["x"]["fn"].event_shape == EVENT
    # the decoder sees the label: changing y changes p(x|z, y) at the same z
    z = guide_tr.nodes["z"]["value"]
    a, b = vae.decode(z, y=y).mean, vae.decode(z, y=(y + 1) % 10).mean
    assert not torch.allclose(a, b)
    assert vae.sample(5, y=3).shape == (5, *EVENT)
    assert vae.sample(3, y=torch.tensor([1, 2, 3])).shape == (3, *EVENT)
    with pytest.raises(PyrovaeError, match="this VAE is conditional"):
        vae.encode(x)
    with pytest.raises(PyrovaeError, match=r"labels in 0\.\.9"):
        vae.encode(x, torch.full((6,), 12))
    pyro.clear_param_store()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    assert np.isfinite(svi.step(x, y))


def test_context_spec_and_vector_context():
    vae = VAE.from_spec({"data_dim": 5, "context": {"family": "vector", "dim": 3}})
    assert vae.spec["context"] == {"family": "vector", "dim": 3}
    x, y = torch.rand(4, 5).round(), torch.randn(4, 3)
    assert vae.encode(x, y).batch_shape == (4,)
    assert vae.sample(2, y=torch.zeros(3)).shape == (2, 5)
    with pytest.raises(PyrovaeError, match=r"'vamp'.*conditional"):
        VAE(5, context={"family": "label"}, prior="vamp")


def test_posterior_checks_accept_a_context(images):
    from pyrovae.posterior.exact import elbo, iwae
    from pyrovae.posterior.target import as_target

    torch.manual_seed(0)
    vae = VAE(EVENT, 2, encoder=[16], context={"family": "label", "classes": 10})
    x, y = images[:4], torch.arange(4)
    target = as_target(vae, y=y)
    lq, lp = elbo(target, x, num_samples=50), iwae(target, x, num_samples=50)
    q, p = torch.as_tensor(lq.value), torch.as_tensor(lp.value)
    assert q.shape == (4,) and torch.isfinite(q).all() and (p >= q - 1).all()
    ev = evaluate(vae, x, num_samples=50, y=y)
    assert abs(ev["elbo"] - float(q.mean())) < 1.0


def test_a_network_built_by_hand_with_an_unknown_role_is_a_pyrovae_error():
    from pyrovae.model.nets import MLPNetwork

    with pytest.raises(PyrovaeError, match="role: expected 'encoder' or 'decoder', got 'critic'"):
        MLPNetwork("critic", 64, 2, 4)
