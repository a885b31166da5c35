"""Multi-process data-parallel training (``torch.distributed`` DDP), launched with ``torchrun``.

``torchrun --nproc-per-node N -m pyrovae train ...`` trains through the same pipeline
and run folder as one process (:mod:`pyrovae.runs.distributed`); this module is the
training part.  Each step every rank (process) draws the same global minibatch
indices from the same seeded shuffle (the permutation one process draws) and reads
only its own contiguous shard of them
(:meth:`~pyrovae.data.source.DataSource.batches` with ``shard=(rank, world)``, the
``DistributedSampler`` rule, reshuffled every epoch);
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients (gloo on
CPU, NCCL on GPUs) before every rank takes the same optimiser step.

Equal to the single-process run, not merely "statistically similar":

* the loss of rank r is W·(N/B)·Σ_{i∈shard r} ℓ_i (W ranks, global batch B,
  data set N), so the average DDP takes is (N/B)·Σ_{i∈batch} ℓ_i, the
  single-process loss, for any shard sizes (uneven and empty shards included).  The
  objective computes the share (:meth:`~pyrovae.training.objectives.Objective.shard_loss`,
  declared by ``supports_ddp``): the ELBO objectives (ℓ_i = −ELBO_i; with free bits,
  the batch mean KL of each dimension is summed over the ranks first, so that every
  rank floors the same KL_j) and the Rényi/IWAE bound (ℓ_i = −L_α(x_i) from the
  example's own K draws: the N/B scale is outside the log-sum-exp, so the shares add);
* the random draws line up: every rank draws the noise of the *whole* global batch
  from the same seeded generator (one ``rsample`` of a guide whose batch is the
  global batch, the rank's rows filled in and constants elsewhere) and keeps its
  own rows, so example i gets the same ε_i as in the single process; dynamic
  binarisation likewise draws for the global batch's shape (no other rank's data is
  read: the other rows are zeros);
* a conditional VAE's context travels with its rows (the shard's ``y``);
* hence :class:`DistributedTrainer` with W ranks gives the parameters of the
  single-process fast engine with the same seed and global batch size up to float
  rounding (the gradient sums are split differently), and its checkpoints are the
  fast engine's: a run may be resumed by one process or by another number of ranks.
  ``tests/training/test_distributed.py`` checks this for W = 2 on CPU.

Not covered: state that a module updates from its own minibatch during the
forward pass (the ``calibrated`` Gaussian σ) follows rank 0's shard
(``broadcast_buffers``), like batch statistics without SyncBatchNorm.  Refused, in one
line naming the reason: objectives that do not declare ``supports_ddp``
(``tracegraph_elbo``, which runs through stock SVI only: for the stock families its
gradient is ``trace_elbo_mc``'s, which shards), model kinds whose own estimator has no
sharded form (``KindEstimator.shard_loss``: M2, whose label is summed out per
example, has none; the hierarchical kind has one, for the ELBO, free bits and the
Rényi/IWAE bound: its upper layers are drawn for the whole global batch, as its first
layer is) and VAE subclasses whose model/guide are not the standard pair.

From Python, inside a process group (:func:`init_process_group`), use
:class:`DistributedTrainer` as :class:`~pyrovae.training.trainer.Trainer`.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pyrovae.data.source import Batch, shard_bounds
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.elbo import MinibatchLoss
from pyrovae.training.objectives import SumOverRanks, one_process
from pyrovae.training.optim import OptimChoice, make_optimizer, set_lr
from pyrovae.training.trainer import Trainer, _as_event

__all__ = ["DDPEngine", "DistributedTrainer", "ShardLoss", "check_supported",
           "ddp_objectives", "init_process_group", "launched_by_torchrun", "shard_bounds",
           "share"]


class ShardLoss(nn.Module):
    """One rank's part of the objective's loss; wrapped by DDP (its forward is the step).

    ``forward(x, num_data, kl_weight, lo=, size=, y=)``: ``x`` (and its context ``y``)
    are rows ``[lo, lo + len(x))`` of a global minibatch of ``size`` rows; returns
    ``(loss_for_ddp, part)``: ``part`` is the rank's share of the single-process loss
    (the objective's :meth:`~pyrovae.training.objectives.Objective.shard_loss`; the
    shares add up to it) and ``loss_for_ddp`` = W·part (DDP averages).  ``total``
    sums a detached tensor over the ranks (an all-reduce; free bits needs the batch
    mean KL of each dimension).
    """

    def __init__(self, vae: Any, objective: Any, rank: int, world: int,
                 total: SumOverRanks = one_process) -> None:
        super().__init__()
        self.vae, self.objective = vae, objective
        self.rank, self.world = rank, world
        self.total = total
        self.last: MinibatchLoss | None = None

    def forward(self, x: torch.Tensor, num_data: int, kl_weight: float, *, lo: int,
                size: int, y: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self.vae
        hi = lo + x.shape[0]
        out = vae.encoder_out(x) if y is None else vae.encoder_out(x, y)
        # the guide over the global batch: this rank's rows, constants elsewhere, so
        # that one rsample draws exactly the single-process ε for every row
        pad = out.detach().new_zeros(())
        out_g = torch.cat(
            [pad.expand(lo, out.shape[-1]), out, pad.expand(size - hi, out.shape[-1])]
        )
        q = vae.guide_family(out_g)
        # scaled by the global batch B: the shares add up to the single-process loss
        self.last = self.objective.shard_loss(vae, q, x, y, slice(lo, hi), num_data, size,
                                              kl_weight, self.total)
        part = self.last.loss
        if hi == lo:  # empty shard (B < W): it drew in step; every parameter takes part
            part = sum((p.sum() * 0.0 for p in vae.parameters()), part)
        return part * self.world, part.detach()


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Σ over the ranks of the process group of ``t`` (all-reduce, in place)."""
    dist.all_reduce(t)
    return t


class DDPEngine:
    """The fast engine's estimator, data-parallel: DDP-wrapped :class:`ShardLoss` and the
    run's optimiser.  Its state is the fast engine's (``name`` ``"fast"``): a checkpoint
    resumes in one process or in any number of ranks.  The DDP wrapper (a collective
    over the ranks) is built at the first step, so that building and restoring an
    engine involve no other process."""

    name = "fast"

    def __init__(self, vae: Any, objective: Any, lr: float, clip_norm: float | None,
                 device: torch.device, optim: OptimChoice | None = None) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.module = ShardLoss(vae, objective, self.rank, self.world, sum_over_ranks)
        self.device = device
        self.ddp: nn.Module | None = None
        self.params = [p for p in vae.parameters() if p.requires_grad]
        o = optim or OptimChoice()
        self.optimizer = make_optimizer(self.params, name=o.name, lr=lr,
                                        weight_decay=o.weight_decay, betas=o.betas)
        self.clip_norm = clip_norm
        self.last_terms: dict[str, torch.Tensor] | None = None
        self.kl_closed_form: bool | None = None
        #: Where the next step's rows sit in their global minibatch, ``(lo, size)``.
        self.rows: tuple[int, int] | None = None

    def set_lr(self, lr: float) -> None:
        """The learning rate from now on (the schedule's value for an epoch)."""
        set_lr([self.optimizer], lr)

    def step(self, x: torch.Tensor, num_data: int, kl_weight: float,
             y: torch.Tensor | None = None) -> torch.Tensor:
        """One step on this rank's rows ``x`` (context ``y``) of the global minibatch
        placed by :attr:`rows` (default: ``x`` is the whole minibatch)."""
        if self.ddp is None:
            from torch.nn.parallel import DistributedDataParallel

            dev = self.device
            ids = [dev.index if dev.index is not None else torch.cuda.current_device()] \
                if dev.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.module, device_ids=ids)
        lo, size = self.rows if self.rows is not None else (0, x.shape[0])
        loss, part = self.ddp(x, num_data, kl_weight, lo=lo, size=size, y=y)
        last = self.module.last
        self.last_terms, self.kl_closed_form = dict(last.terms), last.kl_closed_form
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces (averages) the gradients here
        if self.clip_norm is not None:  # same averaged gradients on every rank
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        return part

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state (the fast engine's layout)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.optimizer.load_state_dict(state)


def check_supported(vae: Any, objective: Any, sample: torch.Tensor,
                    sample_y: torch.Tensor | None = None) -> None:
    """Raise PyrovaeError (one line, the reason) unless DDP training reproduces the
    single-process fast engine for this model and objective (``sample``: a few rows,
    with their context ``sample_y`` for a conditional VAE)."""
    from pyrovae.estimators.kinds import kind_estimator
    from pyrovae.model.vae import VAE
    from pyrovae.training.engines import check_standard_pair

    own = kind_estimator(vae)
    if own is not None and own.shard_loss is None:
        family = (getattr(vae, "spec", None) or {}).get("model", {}).get(
            "family", type(vae).__name__)
        raise PyrovaeError(f"distributed: model: {family} trains with its own estimator "
                           f"({vae.own_loss}), which is not sharded over processes; train "
                           "it in one process")
    if not getattr(objective, "supports_ddp", False):
        name = getattr(objective, "family", "") or type(objective).__name__
        raise PyrovaeError(f"distributed: objective {name!r} has no sharded estimator "
                           f"(it does not declare supports_ddp); use one of "
                           f"{', '.join(ddp_objectives())}")
    if own is not None:  # the kind's own estimator, sharded: what one process trains
        objective.loss_fn(vae)  # refuses what the kind cannot train (as in one process)
        return
    if not isinstance(vae, VAE) or any(
        getattr(type(vae), m) is not getattr(VAE, m) for m in ("encode", "decode", "prior_dist")
    ):
        raise PyrovaeError("distributed: needs a VAE with the stock encode/decode/prior_dist")
    reason = check_standard_pair(vae, sample, y=sample_y, kl=getattr(objective, "kl", "mc"))
    if reason is not None:
        raise PyrovaeError(f"distributed: model/guide are not the standard VAE pair ({reason})")


def ddp_objectives() -> list[str]:
    """The registered objectives that declare ``supports_ddp``."""
    from pyrovae.registry import OBJECTIVES

    return [n for n in OBJECTIVES.names() if getattr(OBJECTIVES.get(n), "supports_ddp", False)]


class DistributedTrainer(Trainer):
    """:class:`~pyrovae.training.trainer.Trainer` over ``torch.distributed`` ranks (DDP).

    Call inside an initialised process group (:func:`init_process_group`); the
    arguments are :class:`Trainer`'s, ``batch_size`` being the *global* minibatch
    (split over the ranks: each rank reads only its shard of it), and ``on_start``,
    called with the trainer once when :meth:`run` starts (before any collective; the
    run folder's rank 0 sends the other ranks its state there).  A ``cuda`` device
    means ``cuda:LOCAL_RANK``.  Histories, evaluation and checkpoints are identical on
    every rank; the epoch loss is all-reduced.
    """

    def __init__(self, vae: Any, data: Any, config: Any = None, *,
                 on_start: Any = None, **kwargs: Any) -> None:
        if not dist.is_initialized():
            raise PyrovaeError("distributed: no process group; launch with torchrun "
                               "(torchrun --nproc-per-node N -m pyrovae train ...)")
        import dataclasses

        from pyrovae.training.config import TrainConfig

        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if config is None:
            config = TrainConfig(**{k: kwargs.pop(k) for k in list(kwargs)
                                    if k in TrainConfig.__dataclass_fields__})
        dev = config.torch_device
        if dev is not None and dev.type == "mps":
            raise PyrovaeError("distributed: device mps has no torch.distributed backend; "
                               "use cpu (gloo) or cuda (NCCL)")
        if dev is not None and dev.type == "cuda":  # one GPU per process
            local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(local)
            config = dataclasses.replace(config, device=str(local))
        config = dataclasses.replace(config, engine="fast")
        self.on_start = on_start
        self._ddp: DDPEngine | None = None
        super().__init__(vae, data, config, **kwargs)

    def make_engine(self) -> DDPEngine:
        """A fresh :class:`DDPEngine` (the model and objective checked first)."""
        head = self.source.head(8).to(self.device)
        check_supported(self.vae, self.objective, _as_event(self.vae, head.x, "data"), head.y)
        self._ddp = DDPEngine(self.vae, self.objective, self.lr, self.clip_norm, self.device,
                              OptimChoice.from_config(self.config))
        return self._ddp

    def run(self) -> Any:
        """:meth:`Trainer.run`, after ``on_start`` (once)."""
        start, self.on_start = self.on_start, None
        if start is not None:
            start(self)
        return super().run()

    def _batches(self) -> Any:
        # this rank's rows of every global minibatch (the single process's permutation)
        return self.source.batches(self.batch_size, generator=self.shuffle,
                                   shard=(self.rank, self.world))

    def _step(self, engine: Any, batch: Batch, beta: float) -> torch.Tensor:
        j = self.step % self.steps_per_epoch  # the step's place in its epoch
        size = min(self.batch_size, self.num_data - j * self.batch_size)
        lo, hi = shard_bounds(size, self.rank, self.world)
        x = _as_event(self.vae, batch.x, "data")
        # the likelihood's per-step draws (dynamic binarisation) for the global batch's
        # shape, the other ranks' rows zeros: the single process's draws for our rows
        full = x.new_zeros((size, *x.shape[1:]))
        full[lo:hi] = x
        x = self.vae.likelihood.prepare_batch(full)[lo:hi]
        assert self._ddp is not None
        self._ddp.rows = (lo, size)
        return engine.step(x, self.num_data, beta, y=batch.y)

    def _reduce(self, sums: torch.Tensor) -> torch.Tensor:
        # the ranks' shares add up to the global loss and terms
        dist.all_reduce(sums)
        return sums


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a ``torchrun`` launch (env ``RANK`` and
    ``WORLD_SIZE`` set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_process_group() -> tuple[int, int]:
    """Join the group torchrun describes (env ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``); returns ``(rank, world_size)``.

    gloo for CPU tensors, and NCCL for CUDA tensors where CUDA is available (a spec's
    ``train.device: cuda`` then trains rank r on ``cuda:LOCAL_RANK``)."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise PyrovaeError(f"distributed: {', '.join(missing)} not set; launch with torchrun "
                           "(torchrun --nproc-per-node N -m pyrovae train ...)")
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PyrovaeError(f"distributed: cannot join the process group ({first})") from None
    return dist.get_rank(), dist.get_world_size()


def share(obj: Any = None) -> Any:
    """Rank 0's ``obj`` on every rank (``broadcast_object_list``; pickled)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
