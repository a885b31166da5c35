"""Multi-process data-parallel training (``torch.distributed`` DDP), launched with ``torchrun``.

Every process (rank) holds the whole training set and the same model.  Each
step all ranks index the same *global* minibatch (the shuffle generator is
seeded identically), each takes its contiguous shard of it, and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients
(gloo on CPU, NCCL on GPUs) before every rank takes the same Adam step.

Equal to the single-process run, not merely "statistically similar":

* the loss of rank r is W·(N/B)·Σ_{i∈shard r} ℓ_i (W ranks, global batch B,
  data set N), so the average DDP takes is (N/B)·Σ_{i∈batch} ℓ_i, the
  single-process loss, for any shard sizes (uneven and empty shards included);
* the random draws line up: every rank draws z for the *whole* global batch
  from the same seeded generator (one ``rsample`` of a guide whose batch is the
  global batch, the rank's rows filled in and the others constant) and keeps its
  own rows, so example i gets the same ε_i as in the single process; dynamic
  binarisation likewise draws the global batch.
* hence ``DistributedTrainer`` with W ranks gives the parameters of
  ``pyrovae.fit(..., engine="fast")`` with the same seed and batch size up to
  float rounding (the gradient sums are split differently);
  ``tests/training/test_distributed.py`` checks this for W = 2 on CPU.

Not covered: state that a module updates from its own minibatch during the
forward pass (the ``calibrated`` Gaussian σ) follows rank 0's shard
(``broadcast_buffers``), like batch statistics without SyncBatchNorm; objectives
other than ``trace_elbo`` / ``trace_elbo_mc`` / ``trace_meanfield_elbo`` without free bits, and VAE
subclasses whose model/guide are not the standard pair, are refused.

Run (one node, 4 processes; CPU)::

    torchrun --nproc_per_node 4 -m pyrovae.cli.distributed --data mnist5k --epochs 20 \\
        --set train.batch_size=512 --out ddp.pt

GPUs: one process per GPU, ``--device cuda`` (rank r uses ``cuda:LOCAL_RANK``,
NCCL).  Several nodes: the same command on every node with ``--nnodes N
--node_rank i --rdzv_backend c10d --rdzv_endpoint HOST:PORT`` (see ``torchrun --help``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.estimators.elbo import MinibatchLoss, draw, minibatch_loss, terms_from_guide
from pyrovae.training.optim import OptimChoice, make_optimizer, set_lr
from pyrovae.training.trainer import Trainer


def shard_bounds(batch: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global batch of ``batch`` rows that rank ``rank`` takes
    (contiguous; sizes differ by at most one; may be empty)."""
    return rank * batch // world, (rank + 1) * batch // world


class ShardLoss(nn.Module):
    """One rank's part of the ELBO loss; wrapped by DDP (its forward is the step).

    ``forward(x_global, num_data, kl_weight)`` returns ``(loss_for_ddp, part)``:
    ``part`` = −(N/B)·Σ_{i∈shard} ELBO_i (the rank's share of the single-process
    loss; the shares add up to it) and ``loss_for_ddp`` = W·part (DDP averages).
    The terms are those of the single-process estimator
    (:func:`pyrovae.estimators.elbo.terms_from_guide` and
    :func:`~pyrovae.estimators.elbo.minibatch_loss`, the objective's KL estimator).
    """

    def __init__(self, vae: Any, objective: Any, rank: int, world: int) -> None:
        super().__init__()
        self.vae = vae
        self.rank, self.world = rank, world
        self.particles = objective.num_particles
        self.kl = getattr(objective, "kl", "mc")
        self.last: MinibatchLoss | None = None

    def forward(
        self, x_global: torch.Tensor, num_data: int, kl_weight: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self.vae
        B = x_global.shape[0]
        lo, hi = shard_bounds(B, self.rank, self.world)
        x = x_global[lo:hi]
        out = vae.encoder_out(x)
        # the guide over the global batch: this rank's rows, constants elsewhere, so
        # that one rsample draws exactly the single-process ε for every row
        pad = out.detach().new_zeros(())
        out_g = torch.cat(
            [pad.expand(lo, out.shape[-1]), out, pad.expand(B - hi, out.shape[-1])]
        )
        q = vae.guide_family(out_g)
        if hi == lo:  # empty shard (B < W): keep the draw in step, contribute zero
            draw(q, self.particles)
            zero = sum((p.sum() * 0.0 for p in vae.parameters()), out.sum() * 0.0)
            self.last = MinibatchLoss(zero, {"reconstruction": zero.detach(),
                                             "kl": zero.detach()}, False)
            return zero, zero.detach()
        terms = terms_from_guide(vae, q, x, num_particles=self.particles, kl=self.kl,
                                 rows=slice(lo, hi))
        # scaled by the global batch B: the shares add up to the single-process loss
        self.last = minibatch_loss(terms, num_data=num_data, batch_size=B, kl_weight=kl_weight)
        part = self.last.loss
        return part * self.world, part.detach()


class DDPEngine:
    """The fast engine's estimator, data-parallel: DDP-wrapped :class:`ShardLoss` + Adam."""

    name = "ddp"

    def __init__(self, vae: Any, objective: Any, lr: float, clip_norm: float | None,
                 device: torch.device, optim: OptimChoice | None = None) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.module = ShardLoss(vae, objective, self.rank, self.world)
        ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.module, device_ids=ids)
        self.params = [p for p in vae.parameters() if p.requires_grad]
        o = optim or OptimChoice()
        self.optimizer = make_optimizer(self.params, name=o.name, lr=lr,
                                        weight_decay=o.weight_decay, betas=o.betas)
        self.clip_norm = clip_norm
        self.last_terms: dict[str, torch.Tensor] | None = None
        self.kl_closed_form: bool | None = None

    def set_lr(self, lr: float) -> None:
        """The learning rate from now on (the schedule's value for an epoch)."""
        set_lr([self.optimizer], lr)

    def step(self, x_global: torch.Tensor, num_data: int, kl_weight: float,
             y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise PyrovaeError("distributed: context y is not supported")
        loss, part = self.ddp(x_global, num_data, kl_weight)
        last = self.module.last
        self.last_terms, self.kl_closed_form = dict(last.terms), last.kl_closed_form
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces (averages) the gradients here
        if self.clip_norm is not None:  # same averaged gradients on every rank
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        return part

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


def check_supported(vae: Any, objective: Any, sample: torch.Tensor) -> None:
    """Raise PyrovaeError unless DDP training reproduces the single-process fast engine."""
    from pyrovae.model.vae import VAE
    from pyrovae.training.engines import check_standard_pair

    family = getattr(objective, "family", "")
    if family not in ("trace_elbo", "trace_elbo_mc", "trace_meanfield_elbo"):
        raise PyrovaeError(
            f"distributed: objective {family or type(objective).__name__!r} is not supported "
            "(use trace_elbo, trace_elbo_mc or trace_meanfield_elbo)"
        )
    if getattr(objective, "free_bits", 0.0) > 0:
        raise PyrovaeError("distributed: free bits needs the batch mean KL over all ranks; "
                           "not supported")
    if getattr(vae, "own_loss", None) is not None:
        raise PyrovaeError(f"distributed: model: {vae.spec['model']['family']} trains with its "
                           "own estimator, which is not sharded; not supported (train it in "
                           "one process)")
    if not isinstance(vae, VAE) or any(
        getattr(type(vae), m) is not getattr(VAE, m) for m in ("encode", "decode", "prior_dist")
    ):
        raise PyrovaeError("distributed: needs a VAE with the stock encode/decode/prior_dist")
    reason = check_standard_pair(vae, sample, kl=getattr(objective, "kl", "mc"))
    if reason is not None:
        raise PyrovaeError(f"distributed: model/guide are not the standard VAE pair ({reason})")


class DistributedTrainer(Trainer):
    """:class:`~pyrovae.training.trainer.Trainer` over ``torch.distributed`` ranks (DDP).

    Call inside an initialised process group (:func:`init_process_group`); the
    arguments are :class:`Trainer`'s, ``batch_size`` being the *global* minibatch
    (split over the ranks).  Histories, evaluation and checkpoints are identical on
    every rank; the epoch loss is all-reduced.
    """

    def __init__(self, vae: Any, data: Any, **kwargs: Any) -> None:
        if not dist.is_initialized():
            raise PyrovaeError("distributed: no process group; launch with torchrun "
                               "(python -m pyrovae.cli.distributed --help)")
        kwargs["engine"] = "fast"
        super().__init__(vae, data, **kwargs)

    def make_engine(self) -> DDPEngine:
        check_supported(self.vae, self.objective, self.source.head(8).x)
        return DDPEngine(self.vae, self.objective, self.lr, self.clip_norm, self.device,
                         OptimChoice.from_config(self.config))

    def _reduce(self, sums: torch.Tensor) -> torch.Tensor:
        # Every rank draws the global batch (same draws as one process) and the
        # engine shards it; the ranks' shares add up to the global loss and terms.
        dist.all_reduce(sums)
        return sums


def init_process_group(device: str | None = None) -> tuple[int, int, torch.device]:
    """Join the group torchrun describes (env ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...).

    ``device`` ``"cuda"`` → NCCL and ``cuda:LOCAL_RANK``; otherwise gloo on CPU.
    Returns ``(rank, world_size, device)``.
    """
    use_cuda = device is not None and str(device).startswith("cuda")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev
