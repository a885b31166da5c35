"""``torchrun --nproc-per-node N -m pyrovae train ...``: data-parallel training through the
same pipeline and run folder as one process.

Rank 0 runs :func:`~pyrovae.runs.pipeline.train_run` (or
:func:`~pyrovae.runs.pipeline.resume_run`) exactly as one process does: it validates
the spec and data, takes the run lock, writes the spec, checkpoints, history, metrics
and figures, and evaluates at the end; only its trainer is a
:class:`~pyrovae.training.distributed.DistributedTrainer`.  The other ranks write
nothing and never touch the folder: when rank 0's training starts it sends them its
normalised spec and its trainer state (the checkpoint it resumes from, or the fresh
state), from which they build the same model and join the training; each reads only
its shard of every global minibatch.  When training ends they exit; rank 0 evaluates
and writes the figures alone.  If rank 0 stops before training (a user error, a held
lock, a run already complete), it tells the others, which end quietly with status 0
(rank 0 reports, and its status is the launch's: torchrun then adds its own failure
report).

The result equals a single process with the same spec (the same global batch
``train.batch_size``) up to float rounding, and a run folder so written is an
ordinary one: ``pyrovae evaluate``, ``check``, ``sample`` and ``train --resume`` (in
one process or under torchrun, any number of ranks) accept it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyrovae.runs import pipeline

__all__ = ["is_launched", "train_distributed"]


def is_launched() -> bool:
    """Whether this process was started by ``torchrun`` (one rank of a launch)."""
    from pyrovae.training.distributed import launched_by_torchrun

    return launched_by_torchrun()


def train_distributed(
    spec_raw: dict[str, Any] | None,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    size_limit: float = 1.0,
) -> dict[str, Any] | None:
    """Train (or, ``resume=True``, resume) the run folder ``out`` as this torchrun rank.

    Every rank calls it with the same arguments.  Returns rank 0's final metrics
    (:func:`~pyrovae.runs.pipeline.train_run`'s) on rank 0, ``None`` on the others
    (also when rank 0 stopped before training).  Rank 0 raises what one
    process raises, first telling the other ranks to stop."""
    import torch.distributed as dist

    from pyrovae.training.distributed import init_process_group

    rank, _ = init_process_group()
    try:
        if rank == 0:
            return _lead(spec_raw, out, resume=resume, overwrite=overwrite,
                               progress=progress, size_limit=size_limit)
        _follow()
        return None
    finally:
        dist.destroy_process_group()


def _lead(spec_raw: dict[str, Any] | None, out: str | Path, *, resume: bool,
          overwrite: bool, progress: bool, size_limit: float) -> dict[str, Any]:
    """Rank 0: the one-process pipeline with a data-parallel trainer that sends the
    other ranks the spec and its state when training starts."""
    from pyrovae.training.distributed import DistributedTrainer, share

    started: list[bool] = []

    def make_trainer(spec: dict[str, Any], vae: Any, train: Any, test: Any, *,
                     progress: bool = True, callbacks: Any = ()) -> Any:
        def on_start(trainer: Any) -> None:
            share({"spec": spec, "state": trainer.state_dict()})
            started.append(True)

        def trainer_class(*args: Any, **kwargs: Any) -> DistributedTrainer:
            return DistributedTrainer(*args, on_start=on_start, **kwargs)

        return pipeline.trainer_for(spec, vae, train, test, progress=progress,
                                    callbacks=callbacks, trainer_class=trainer_class)

    try:
        if resume:
            return pipeline.resume_run(out, spec_raw, progress=progress, size_limit=size_limit,
                                       make_trainer=make_trainer)
        return pipeline.train_run(spec_raw, out, overwrite=overwrite, progress=progress,
                                  size_limit=size_limit, make_trainer=make_trainer)
    except BaseException as exc:
        if not started:  # the others wait for the start: tell them to stop
            share({"stop": str(exc) or type(exc).__name__})
        raise  # after the start, torchrun ends the others when this rank fails


def _follow() -> None:
    """A rank other than 0: wait for rank 0's start, build the same model from its spec
    and state, and train (reading this rank's shards only)."""
    from pyrovae.training.distributed import DistributedTrainer, share

    message = share(None)
    if "stop" in message:  # rank 0 stopped before training and says why
        return
    spec, vae, train, test = pipeline.build(message["spec"])
    trainer = pipeline.trainer_for(spec, vae, train, test, progress=False,
                                   trainer_class=DistributedTrainer)
    trainer.load_state_dict(message["state"])
    trainer.run()  # with train.threads threads
