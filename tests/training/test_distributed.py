"""Data-parallel training equals single-process training, through the same run folder.

* in-process: the ranks' shares of the loss (``ShardLoss``, each given only its rows)
  add up to the single-process fast loss, value and gradients, on the same draws, for
  uneven and empty shards; each rank reads only its shard of every global minibatch;
* end to end: ``torchrun --nproc-per-node 2 -m pyrovae train`` (gloo, CPU, 127.0.0.1
  only) writes a run folder whose parameters are those of the single-process
  ``pyrovae train`` (same spec, seed and global batch size) up to float rounding; the
  folder resumes (under torchrun or in one process), evaluates, checks and samples; a
  conditional VAE with free bits and the two-layer IWAE (the hierarchical kind's own
  estimator, sharded) likewise; M2 (its label summed out) is refused in one line.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

import pyrovae
from pyrovae.data.source import TensorSource
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.standard import standard_loss
from pyrovae.training.distributed import DistributedTrainer, ShardLoss, shard_bounds
from pyrovae.training.objectives import (
    Objective,
    RenyiObjective,
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


@pytest.mark.parametrize("objective", [
    TraceELBOObjective(), TraceMeanFieldObjective(), TraceELBOObjective(num_particles=2),
    TraceELBOMCObjective(), TraceELBOMCObjective(2),
    # free bits: a floor that some dimensions' batch-mean KL is above and some below
    TraceELBOObjective(free_bits=0.3), TraceELBOMCObjective(2, free_bits=0.3),
    RenyiObjective(num_particles=3), RenyiObjective(num_particles=4, alpha=0.5),
], ids=lambda o: f"{o.family}-K{o.num_particles}-fb{getattr(o, 'free_bits', 0)}"
               f"-a{getattr(o, 'alpha', '')}")
@pytest.mark.parametrize("batch,world", [(10, 2), (7, 3), (2, 3)])
def test_shares_add_up_to_the_single_process_loss(objective, batch, world):
    torch.manual_seed(0)
    vae = pyrovae.VAE(12, 2, encoder=[8])
    x = (torch.rand(batch, 12) > 0.5).float()
    N, beta = 50, 0.7

    torch.manual_seed(1)
    if objective.family == "trace_elbo_mc" and not objective.free_bits:
        ref = standard_loss(vae, x, num_data=N, kl_weight=beta,
                            num_particles=objective.num_particles).loss
    else:
        ref = objective.differentiable_loss(vae, x, num_data=N, kl_weight=beta)
    ref_grads = param_grads(vae, ref)
    total, total_grads, reduced = rank_shares(vae, objective, x, world, N, beta)
    assert reduced == (world if getattr(objective, "free_bits", 0) else 0)
    assert total == pytest.approx(float(ref.detach()), rel=1e-5)
    for g, r in zip(total_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def param_grads(model: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    """d loss / d parameter, for every parameter of ``model`` (zeros where unused)."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in model.parameters()]


def rank_shares(model: torch.nn.Module, objective, x: torch.Tensor, world: int,
                num_data: int, kl_weight: float
                ) -> tuple[float, list[torch.Tensor], int]:
    """What ``world`` DDP ranks compute from the global minibatch ``x``, run one after
    the other in this process, each given only its rows and the generator state seeded
    1: ``(Σ of the ranks' loss shares, DDP's average of their gradients, how many
    tensors each rank summed over the ranks)``.  The all-reduce is played by two
    passes: the first records every rank's share, the second is given their sum."""
    batch = x.shape[0]
    shares: list[torch.Tensor] = []

    def record(t):
        shares.append(t.clone())
        return t

    for rank in range(world):
        torch.manual_seed(1)
        lo, hi = shard_bounds(batch, rank, world)
        ShardLoss(model, objective, rank, world, record)(x[lo:hi], num_data, kl_weight,
                                                         lo=lo, size=batch)
    summed = sum(shares) if shares else None

    def all_reduce(t):
        return summed.clone()

    total, total_grads = 0.0, [torch.zeros_like(p) for p in model.parameters()]
    for rank in range(world):
        torch.manual_seed(1)  # every rank starts from the same generator state
        lo, hi = shard_bounds(batch, rank, world)  # the rank is given its rows only
        loss, part = ShardLoss(model, objective, rank, world, all_reduce)(
            x[lo:hi], num_data, kl_weight, lo=lo, size=batch)
        total += float(part.detach())
        for acc, g in zip(total_grads, param_grads(model, loss / world), strict=True):
            acc += g  # DDP's average of the ranks' gradients
    return total, total_grads, len(shares)


def test_each_rank_reads_only_its_shard_of_the_global_batches():
    src = TensorSource(torch.arange(23.0).reshape(23, 1))
    whole = [b.x for b in src.batches(5, generator=torch.Generator().manual_seed(4))]
    shards = [[b.x for b in src.batches(5, generator=torch.Generator().manual_seed(4),
                                        shard=(r, 3))] for r in range(3)]
    for i, batch in enumerate(whole):  # the same permutation, split in rank order
        torch.testing.assert_close(torch.cat([s[i] for s in shards]), batch)
        assert [len(s[i]) for s in shards] == [hi - lo for lo, hi in
                                              (shard_bounds(len(batch), r, 3) for r in range(3))]


def test_trainer_needs_a_process_group():
    with pytest.raises(PyrovaeError, match="torchrun"):
        DistributedTrainer(pyrovae.VAE(4, 2), torch.zeros(8, 4), epochs=1)


def test_objectives_declare_whether_they_shard():
    from pyrovae.registry import OBJECTIVES
    from pyrovae.training.distributed import check_supported, ddp_objectives

    assert set(ddp_objectives()) == {"trace_elbo", "trace_elbo_mc", "trace_meanfield_elbo",
                                     "renyi_elbo"}
    for name in ddp_objectives():  # a declared capability is an implemented one
        cls = OBJECTIVES.get(name)
        assert cls.shard_loss is not Objective.shard_loss, name
    graph = OBJECTIVES.build({"family": "tracegraph_elbo"}, "objective")
    with pytest.raises(PyrovaeError, match="does not declare supports_ddp"):
        check_supported(pyrovae.VAE(4, 2), graph, torch.zeros(2, 4))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _torchrun(cwd, *args: str, sets=()) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 -m pyrovae train ARGS`` (gloo, 127.0.0.1 only)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--nnodes", "1", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "pyrovae", "train", "--quiet", *args]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, env={**os.environ, **ENV}, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def _ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]


def _params(run) -> dict[str, torch.Tensor]:
    from pyrovae import io as pio

    return pio.load_checkpoint(run / "checkpoint.pt")["model"]


def _worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


SETS = ["data.name=digits", "train.epochs=2", "train.batch_size=101", "train.seed=3",
        "kl_weight.family=linear", "kl_weight.warmup_epochs=1", "eval.num_samples=8",
        "likelihood.dynamic_binarization=true",
        # the run's optimiser and schedule, the same as one process's
        "train.optimizer=adamw", "train.weight_decay=0.05", "train.lr_schedule=exponential",
        "train.lr_gamma=0.5"]


@pytest.mark.slow
def test_two_processes_write_the_run_folder_of_one(tmp_path):
    from pyrovae.runs.pipeline import evaluate_run, resume_run, train_run
    from pyrovae.runs.spec import apply_overrides

    _ok(_torchrun(tmp_path, "--out", "ddp", sets=SETS))
    ddp = tmp_path / "ddp"
    for name in ("spec.yaml", "checkpoint.pt", "history.json", "metrics.json",
                 "pyrovae-run.json", "figures/learning_curve.png"):
        assert (ddp / name).is_file(), name

    # the single-process run of the same spec (what `pyrovae train` does)
    one = tmp_path / "one"
    train_run(apply_overrides({}, SETS), one, progress=False)
    assert _worst(_params(ddp), _params(one)) < 1e-5
    assert (ddp / "spec.yaml").read_text() == (one / "spec.yaml").read_text()
    rec_ddp = json.loads((ddp / "history.json").read_text())["records"][-1]
    rec_one = json.loads((one / "history.json").read_text())["records"][-1]
    assert rec_ddp["step"] == rec_one["step"] == 2 * 15  # 1438 rows / 101 per batch
    assert rec_ddp["train_loss"] == pytest.approx(rec_one["train_loss"], rel=1e-5)
    assert rec_ddp["test_elbo"] == pytest.approx(rec_one["test_elbo"], abs=1e-4)

    # an ordinary run folder: evaluate, check --quick, sample
    assert evaluate_run(ddp, num_samples=4)["epochs_done"] == 2
    from pyrovae.cli import main

    assert main(["check", str(ddp), "--quick", "--out", str(tmp_path / "chk")]) == 0
    assert main(["sample", str(ddp), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()

    # stopped after epoch 1 and resumed under 2 processes: the uninterrupted run
    _ok(_torchrun(tmp_path, "--out", "half", sets=[*SETS, "train.epochs=1"]))
    res = _torchrun(tmp_path, "--resume", "half", "--epochs", "2")
    _ok(res)
    assert res.stdout.count("run folder: half") == 1  # rank 0 alone prints
    assert _worst(_params(tmp_path / "half"), _params(ddp)) < 1e-6
    # ... and a 2-process checkpoint resumes in one process too
    _ok(_torchrun(tmp_path, "--out", "half1", sets=[*SETS, "train.epochs=1"]))
    resume_run(tmp_path / "half1", apply_overrides({}, [*SETS, "train.epochs=2"]),
               progress=False)
    assert _worst(_params(tmp_path / "half1"), _params(one)) < 1e-5


def _ddp_and_one(tmp_path, sets: list[str]) -> tuple:
    """The run folders ``ddp`` (2 processes) and ``one`` (one process) of the same spec."""
    from pyrovae.runs.pipeline import train_run
    from pyrovae.runs.spec import apply_overrides

    _ok(_torchrun(tmp_path, "--out", "ddp", sets=sets))
    train_run(apply_overrides({}, sets), tmp_path / "one", progress=False)
    return tmp_path / "ddp", tmp_path / "one"


def test_a_conditional_vae_with_free_bits_under_two_processes_equals_one(tmp_path):
    """The label context travels with its rows; free bits floors the batch-mean KL of
    each dimension, all-reduced over the ranks (one collective per step)."""
    ddp, one = _ddp_and_one(tmp_path, [
        "data.name=digits", "context.family=label", "context.classes=10", "train.epochs=1",
        "train.batch_size=101", "eval.num_samples=4", "objective.free_bits=0.5"])
    # float rounding over 15 Adam steps (lr 1e-3); ranks that skip the all-reduce (each
    # flooring its own share of the KL) end 1.2e-3 away
    assert _worst(_params(ddp), _params(one)) < 5e-5
    rec_ddp = json.loads((ddp / "history.json").read_text())["records"][-1]
    rec_one = json.loads((one / "history.json").read_text())["records"][-1]
    assert rec_ddp["train_loss"] == pytest.approx(rec_one["train_loss"], rel=1e-5)
    assert json.loads((ddp / "metrics.json").read_text())["context"] == "label"


def test_a_kind_with_its_own_estimator_is_refused_in_one_line(tmp_path):
    # one rank of a launch (world size 1: no other process to wait for); the check comes
    # before anything is written
    env = {**os.environ, **ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    res = subprocess.run([sys.executable, "-m", "pyrovae", "train", "--quiet", "--out", "h",
                          "--set", "model=m2", "--set", "train.epochs=1"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines() == [
        "pyrovae train: error: distributed: model: m2 trains with its own "
        "estimator (enumerated), which is not sharded over processes; train it in one "
        "process"]
    assert not (tmp_path / "h").exists()


@pytest.mark.slow
def test_the_two_layer_iwae_under_two_processes_equals_one(tmp_path):
    """The hierarchical kind's own estimator, sharded: Burda et al.'s two-layer IWAE."""
    ddp, one = _ddp_and_one(tmp_path, [
        "data.name=digits", "model=hierarchical", "train.epochs=1", "train.batch_size=101",
        "eval.num_samples=4", "objective.family=renyi_elbo", "objective.num_particles=3"])
    assert _worst(_params(ddp), _params(one)) < 5e-5
