"""``pyrovae train``: train the model a spec describes and write a run folder."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from pyrovae.cli.flags import add_param_flag, add_progress_flag
from pyrovae.errors import PyrovaeError
from pyrovae.runs.distributed import is_launched, train_distributed
from pyrovae.runs.folder import SPEC_FILE
from pyrovae.runs.pipeline import RunComplete, resume_run, train_run
from pyrovae.runs.spec import apply_overrides, load_spec
from pyrovae.training.config import TRAIN_PARAMS

#: The training options with a flag of their own (``--epochs N`` is ``--set
#: train.epochs=N``); type, help and default shown are read off their Param (TrainConfig).
TRAIN_FLAGS: tuple[str, ...] = ("epochs", "seed", "device", "threads")

_METAVARS = {"epochs": "N", "seed": "S", "device": "DEV", "threads": "N"}


def add_train_flags(parser: argparse.ArgumentParser,
                    names: tuple[str, ...] = TRAIN_FLAGS) -> None:
    """One flag per training option in ``names``, declared by its
    :class:`~pyrovae.registry.Param` in :data:`~pyrovae.training.config.TRAIN_PARAMS`:
    the flag's type from the Param's kind, its help from the doc and default. The
    parser's default is ``None`` (not given: the spec's value applies, whose default is
    the same Param's); a given value is applied as ``--set train.NAME=VALUE``."""
    for name in names:
        p = TRAIN_PARAMS[name]
        add_param_flag(parser, name, p, default=None, metavar=_METAVARS.get(name, name.upper()),
                       help=f"{p.doc} (default: {_shown(p.default)}, or the spec's "
                            f"train.{name})")


def train_sets(args: argparse.Namespace, names: tuple[str, ...] = TRAIN_FLAGS) -> list[str]:
    """The given training flags as ``train.NAME=VALUE`` overrides (absent ones: none)."""
    return [f"train.{n}={getattr(args, n)}" for n in names if getattr(args, n) is not None]


def _shown(default: object) -> str:
    return "null" if default is None else str(default)


def register(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a VAE and write a run folder",
        description="Train a VAE (digits, binarised, Bernoulli likelihood, 2-d latent by "
        "default) and write RUN/: spec.yaml, checkpoint.pt, history.json, metrics.json, "
        "figures/.  --resume RUN continues a stopped run from its last checkpoint.  Under "
        "torchrun (torchrun --nproc-per-node N -m pyrovae train --out RUN ...) the "
        "processes train data-parallel, train.batch_size the global minibatch split over "
        "them, and rank 0 writes the same run folder (the result equals one process).",
    )
    p.add_argument("--config", metavar="FILE", help="spec file (.yaml, .yml, .toml, .json)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a spec entry, e.g. --set prior.family=mixture (repeatable)")
    p.add_argument("--data", metavar="NAME", help="data set: digits, mnist5k, mnist, or a file")
    add_train_flags(p)
    p.add_argument("--out", metavar="RUN", help="run folder (default: runs/DATA-TIMESTAMP)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", metavar="RUN",
                   help="continue RUN from its last checkpoint (same spec and data; "
                   "--epochs N may raise the number of epochs)")
    p.add_argument("--quiet", action="store_true", help="no progress (as --no-progress)")
    add_progress_flag(p, help="progress on stderr (default on): a bar on a terminal, else a "
                      "line per epoch and within epochs and the final evaluation a line at "
                      "most every 10 s; --no-progress: none")
    p.add_argument("--size-limit", type=float, default=1.0, metavar="X",
                   help="multiply the size budget (50M parameters, 4 GiB of activations per "
                        "step, 256 hidden layers, estimated from the spec) by X (default 1)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    sets = list(args.overrides)
    if args.data is not None:
        sets.append(f"data.name={args.data}")
    sets += train_sets(args)
    if args.out is not None and not args.out.strip():
        raise PyrovaeError("--out: expected a folder name, got an empty string")
    if args.resume is not None and not args.resume.strip():
        raise PyrovaeError("--resume: expected a run folder, got an empty string")
    show = not args.quiet and args.progress is not False
    if is_launched():  # one rank of a torchrun launch: rank 0 writes the run folder
        return _run_distributed(args, sets, show)
    raw, out = _spec_and_folder(args, sets)
    if args.resume:
        try:
            metrics = resume_run(out, raw, progress=show, size_limit=args.size_limit)
        except RunComplete as done:
            print(done)
            return 0
    else:
        metrics = train_run(raw, out, overwrite=args.overwrite, progress=show,
                            size_limit=args.size_limit)
    _report(out, metrics)
    return 0


def _run_distributed(args: argparse.Namespace, sets: list[str], show: bool) -> int:
    """``pyrovae train`` as one torchrun rank (:mod:`pyrovae.runs.distributed`); only
    rank 0 prints."""
    raw, out = _spec_and_folder(args, sets)  # rank 0's folder: the others write nothing
    try:
        metrics = train_distributed(raw, out, resume=bool(args.resume),
                                    overwrite=args.overwrite, progress=show,
                                    size_limit=args.size_limit)
    except RunComplete as done:
        print(done)
        return 0
    if metrics is not None:
        _report(out, metrics)
    return 0


def _spec_and_folder(args: argparse.Namespace,
                     sets: list[str]) -> tuple[dict[str, Any] | None, str]:
    """The raw spec and the run folder of a start (``--out``, or a name from the spec) or
    of a ``--resume`` (the run itself, which takes no ``--out`` or ``--overwrite``)."""
    if args.resume:
        if args.out or args.overwrite:
            raise PyrovaeError("--resume continues RUN in place; it takes no --out or --overwrite")
        return _resume_spec(args, sets), args.resume
    raw = apply_overrides(load_spec(args.config) if args.config else {}, sets)
    return raw, args.out or default_out(raw)


def _resume_spec(args: argparse.Namespace, sets: list[str]) -> dict[str, Any] | None:
    """The spec a resume is given: the config file with the overrides, the run's own spec
    with the overrides, or ``None`` (the run's own)."""
    if args.config:
        return apply_overrides(load_spec(args.config), sets)
    if sets:  # changes relative to the run's own spec
        own = Path(args.resume) / SPEC_FILE
        # read as raw text: the pipeline validates the spec it is given, once
        return apply_overrides(load_spec(own) if own.is_file() else {}, sets)
    return None


def _report(out: str, metrics: dict[str, Any]) -> None:
    print(f"run folder: {out}")
    print(f"epochs: {metrics['epochs']}, training time: {metrics['seconds']:.1f} s")
    quantity = "log p(x | y)" if metrics.get("context") else "log p(x)"
    for split in ("train", "test"):
        if split in metrics:
            m = metrics[split]
            print(
                f"{split:>5}: ELBO {m['elbo']:.3f}  {quantity} ≥ {m['log_likelihood']:.3f} "
                f"± {m['log_likelihood_se']:.3f} (IWAE, K={m['num_samples']})  "
                f"KL {m['kl']:.3f}  nats/example"
            )


def default_out(raw: dict[str, Any]) -> str:
    """``runs/DATA-TIMESTAMP`` (DATA: the data set's name, made safe for a file name)."""
    data = raw.get("data")
    name = data.get("name", "digits") if isinstance(data, dict) else "digits"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).name) or "data"
    return f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
