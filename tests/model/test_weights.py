"""Shareable weights: ``VAE.save`` / ``pyrovae.load_vae`` / ``VAE.from_pretrained``
(safetensors plus the spec beside it), custom modules supplied again at load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import pyrovae
from pyrovae import VAE, PyrovaeError, evaluate, fit, load_vae

#: The user's own conv networks, as a module of their own (imported by both processes).
NETS = textwrap.dedent('''
    import torch
    from torch import nn

    class ConvEncoder(nn.Module):
        def __init__(self, latent=2):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU(), nn.Conv2d(4, 8, 4, stride=2, padding=1))
            self.out = nn.Linear(8 * 4 * 4, 2 * latent)

        def forward(self, x):
            return self.out(torch.relu(self.conv(x)).flatten(1))

    class ConvDecoder(nn.Module):
        def __init__(self, latent=2):
            super().__init__()
            self.fc = nn.Linear(latent, 8 * 4 * 4)
            self.deconv = nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1)

        def forward(self, z):
            lead = z.shape[:-1]
            h = torch.relu(self.fc(z)).reshape(-1, 8, 4, 4)
            return self.deconv(h).reshape(*lead, 64)
''')

LOAD = textwrap.dedent('''
    import json, sys, torch
    torch.set_num_threads(1)
    import pyrovae
    from nets import ConvEncoder, ConvDecoder
    folder, data, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    vae = pyrovae.VAE.from_pretrained(folder, encoder=ConvEncoder(), decoder=ConvDecoder)
    x = torch.load(data, weights_only=True)
    r = pyrovae.evaluate(vae, x, num_samples=k, seed=7)
    print(json.dumps(r))
''')


def _jsonable(r: dict) -> dict:
    return json.loads(json.dumps(r))


@pytest.fixture
def nets(tmp_path, monkeypatch):
    (tmp_path / "nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("nets", None)
    import nets as module

    yield module
    sys.modules.pop("nets", None)


def _images(n: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, 1, 8, 8), 0.3), generator=g)


def test_custom_conv_vae_round_trips_in_a_fresh_process_to_the_last_digit(tmp_path, nets):
    torch.manual_seed(1)
    x = _images()
    vae = VAE((1, 8, 8), 2, encoder=nets.ConvEncoder(), decoder=nets.ConvDecoder())
    fit(vae, x, epochs=2, batch_size=16, progress=False)  # BatchNorm running stats move
    vae.eval()
    here = _jsonable(evaluate(vae, x, num_samples=16, seed=7))
    folder = vae.save(tmp_path / "saved")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "spec.yaml"]
    torch.save(x, tmp_path / "x.pt")
    (tmp_path / "load.py").write_text(LOAD)
    done = subprocess.run([sys.executable, str(tmp_path / "load.py"), str(folder),
                           str(tmp_path / "x.pt"), "16"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    there = json.loads(done.stdout)
    assert there == here  # every number, per example too, bit for bit
    assert there["num_examples"] == 48


def test_loaded_vae_has_the_saved_parameters_and_buffers_bitwise(tmp_path, nets):
    torch.manual_seed(2)
    vae = VAE((1, 8, 8), 2, encoder=nets.ConvEncoder(), decoder=nets.ConvDecoder(),
              likelihood={"family": "gaussian", "sigma": "shared"})
    fit(vae, _images(32) * 0.5 + 0.25, epochs=1, batch_size=16, progress=False)
    vae.save(tmp_path / "w")
    again = load_vae(tmp_path / "w", encoder=nets.ConvEncoder, decoder=nets.ConvDecoder())
    a, b = vae.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert again.spec == vae.spec and not again.training


def test_registered_networks_need_no_module_and_float64_is_kept(tmp_path):
    torch.manual_seed(3)
    vae = VAE(12, 3, encoder=[8], prior={"family": "mixture", "components": 2}).double()
    vae.save(tmp_path / "w")
    again = pyrovae.load_vae(tmp_path / "w")
    assert next(again.parameters()).dtype == torch.float64
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in vae.state_dict().items())


def test_loading_never_consumes_the_users_random_stream(tmp_path):
    VAE(6, 2, encoder=[4]).save(tmp_path / "w")
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    load_vae(tmp_path / "w")
    assert torch.equal(torch.rand(3), before)


def test_mistakes_are_one_clear_line(tmp_path, nets):
    vae = VAE((1, 8, 8), 2, encoder=nets.ConvEncoder(), decoder=nets.ConvDecoder())
    vae.save(tmp_path / "w")
    with pytest.raises(PyrovaeError, match="exists; pass overwrite=True"):
        vae.save(tmp_path / "w")
    with pytest.raises(PyrovaeError, match=r"encoder: .*your own module ConvEncoder; pass "):
        load_vae(tmp_path / "w", decoder=nets.ConvDecoder())
    with pytest.raises(PyrovaeError, match="saved from a ConvDecoder, got a ConvEncoder"):
        load_vae(tmp_path / "w", encoder=nets.ConvEncoder(), decoder=nets.ConvEncoder())
    with pytest.raises(PyrovaeError, match=r"encoder: expected output shape \(2, 4\)"):
        load_vae(tmp_path / "w", encoder=nets.ConvEncoder(latent=3),
                 decoder=nets.ConvDecoder())
    mlp = VAE(6, 2, encoder=[4])
    mlp.save(tmp_path / "m")
    with pytest.raises(PyrovaeError, match="'mlp' family, rebuilt from its spec"):
        load_vae(tmp_path / "m", encoder=nets.ConvEncoder())
    spec = tmp_path / "m" / "spec.yaml"
    spec.write_text(spec.read_text().replace("latent_dim: 2", "latent_dim: 3"))
    with pytest.raises(PyrovaeError, match=r"is not the spec model\.safetensors was saved with"):
        load_vae(tmp_path / "m")


def test_a_pickle_in_place_of_the_weights_is_refused_unread(tmp_path):
    VAE(6, 2, encoder=[4]).save(tmp_path / "w")
    weights = tmp_path / "w" / "model.safetensors"
    torch.save({"model": {}}, weights)  # a pickle: never unpickled
    with pytest.raises(PyrovaeError, match="not a safetensors file"):
        load_vae(tmp_path / "w")
    weights.write_bytes(b"\x00" * 4)
    with pytest.raises(PyrovaeError, match="not a safetensors file"):
        load_vae(tmp_path / "w")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(weights))  # safetensors, but not ours
    with pytest.raises(PyrovaeError, match="not pyrovae weights"):
        load_vae(tmp_path / "w")


def test_non_finite_weights_are_never_written(tmp_path):
    vae = VAE(6, 2, encoder=[4])
    with torch.no_grad():
        next(vae.parameters())[0, 0] = float("nan")
    with pytest.raises(PyrovaeError, match="non-finite"):
        vae.save(tmp_path / "w")
    assert not (tmp_path / "w" / "model.safetensors").exists()
