"""Data-parallel training equals single-process training.

* in-process: the ranks' shares of the loss (``ShardLoss``) add up to the
  single-process fast loss, value and gradients, on the same draws, for uneven
  and empty shards;
* end to end: ``torchrun --nproc_per_node 2 -m pyrovae.cli.distributed`` (gloo, CPU,
  127.0.0.1 only) trains to the parameters of the single-process ``pyrovae train``
  path (same spec, seed and global batch size), up to float rounding.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys

import pytest
import torch

import pyrovae
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.standard import standard_loss
from pyrovae.training.distributed import DistributedTrainer, ShardLoss, shard_bounds
from pyrovae.training.objectives import (
    TraceELBOMCObjective,
    TraceELBOObjective,
    TraceMeanFieldObjective,
)


def test_shard_bounds_cover_the_batch():
    for batch in (1, 2, 7, 101, 128):
        for world in (1, 2, 3, 8):
            rows = [shard_bounds(batch, r, world) for r in range(world)]
            assert rows[0][0] == 0 and rows[-1][1] == batch
            assert all(a[1] == b[0] for a, b in itertools.pairwise(rows))
            assert max(hi - lo for lo, hi in rows) - min(hi - lo for lo, hi in rows) <= 1


@pytest.mark.parametrize("objective", [TraceELBOObjective(), TraceMeanFieldObjective(),
                                       TraceELBOObjective(num_particles=2),
                                       TraceELBOMCObjective(), TraceELBOMCObjective(2)])
@pytest.mark.parametrize("batch,world", [(10, 2), (7, 3), (2, 3)])
def test_shares_add_up_to_the_single_process_loss(objective, batch, world):
    torch.manual_seed(0)
    vae = pyrovae.VAE(12, 2, encoder=[8])
    x = (torch.rand(batch, 12) > 0.5).float()
    N, beta = 50, 0.7

    def grads(loss):
        vae.zero_grad(set_to_none=True)
        loss.backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                for p in vae.parameters()]

    torch.manual_seed(1)
    if objective.family == "trace_elbo_mc":
        ref = standard_loss(vae, x, num_data=N, kl_weight=beta,
                            num_particles=objective.num_particles).loss
    else:
        ref = objective.differentiable_loss(vae, x, num_data=N, kl_weight=beta)
    ref_grads = grads(ref)
    total, total_grads = 0.0, [torch.zeros_like(p) for p in vae.parameters()]
    for rank in range(world):
        torch.manual_seed(1)  # every rank starts from the same generator state
        loss, part = ShardLoss(vae, objective, rank, world)(x, N, beta)
        total += float(part.detach())
        for acc, g in zip(total_grads, grads(loss / world), strict=True):
            acc += g  # DDP's average of the ranks' gradients
    assert total == pytest.approx(float(ref.detach()), rel=1e-5)
    for g, r in zip(total_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_trainer_needs_a_process_group():
    with pytest.raises(PyrovaeError, match="torchrun"):
        DistributedTrainer(pyrovae.VAE(4, 2), torch.zeros(8, 4), epochs=1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SETS = ["data.name=digits", "train.epochs=2", "train.batch_size=101", "train.seed=3",
        "kl_weight.family=linear", "kl_weight.warmup_epochs=1",
        # the run's optimiser and schedule, the same as one process's
        "train.optimizer=adamw", "train.weight_decay=0.05", "train.lr_schedule=exponential",
        "train.lr_gamma=0.5"]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "pyrovae.cli.distributed", "--quiet", "--out", str(out)]
    for s in SETS:
        cmd += ["--set", s]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "world size 2 (gloo)" in res.stdout
    saved = torch.load(out, weights_only=False)
    assert saved["world_size"] == 2

    # the single-process run of the same spec (what `pyrovae train` does)
    from pyrovae.runs.pipeline import build, trainer_for
    from pyrovae.runs.spec import apply_overrides

    spec, vae, train, test = build(apply_overrides({}, SETS))
    history = trainer_for(spec, vae, train, test, progress=False).run()
    single = vae.state_dict()
    assert saved["model"].keys() == single.keys()
    worst = max(float((saved["model"][k] - v).abs().max()) for k, v in single.items())
    assert worst < 1e-5, f"largest parameter difference {worst:g}"
    rec_ddp, rec_one = saved["history"]["records"][-1], history.last
    assert rec_ddp["step"] == rec_one["step"] == 2 * 15  # 1438 rows / 101 per batch
    assert rec_ddp["train_loss"] == pytest.approx(rec_one["train_loss"], rel=1e-6)
    assert rec_ddp["test_elbo"] == pytest.approx(rec_one["test_elbo"], abs=1e-4)
