"""One policy for randomness: seeded, forked streams on every device a computation uses."""

from __future__ import annotations

import pytest
import torch

from pyrovae.randomness import devices_of, seeded


def test_seeded_reproduces_and_leaves_the_callers_stream_alone():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with seeded(3):
        a = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), before)
    with seeded(3):
        b = torch.rand(4)
    with seeded(4):
        c = torch.rand(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with seeded(None):  # forked, not reseeded: the caller's next draw is unchanged
        torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)


def test_devices_of_finds_tensors_modules_and_targets():
    class Target:
        vae = torch.nn.Linear(2, 2)

    assert devices_of(torch.zeros(1), torch.nn.Linear(1, 1), Target(), "x") == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seeded_forks_and_seeds_the_gpu_stream():
    x = torch.zeros(1, device="cuda")
    assert devices_of(x) == [x.device]
    before = torch.cuda.get_rng_state(x.device)
    with seeded(1, x):
        a = torch.rand(3, device="cuda")
    with seeded(1, x):
        b = torch.rand(3, device="cuda")
    assert torch.equal(a, b)
    assert torch.equal(torch.cuda.get_rng_state(x.device), before)
