"""``torchrun --nproc_per_node N -m pyrovae.cli.distributed [options]``: data-parallel
training of a spec over torchrun processes (see :mod:`pyrovae.training.distributed`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist

from pyrovae.errors import PyrovaeError
from pyrovae.training.distributed import DistributedTrainer, init_process_group


def main(argv: Sequence[str] | None = None) -> int:
    from pyrovae.cli.train import add_train_flags, train_sets
    from pyrovae.runs.pipeline import build, check_train_section
    from pyrovae.runs.spec import apply_overrides, load_spec

    p = argparse.ArgumentParser(
        prog="python -m pyrovae.cli.distributed",
        description="Data-parallel VAE training over torchrun processes (DDP): "
        "torchrun --nproc_per_node N -m pyrovae.cli.distributed [options]. "
        "The global minibatch (train.batch_size) is split over the processes; the "
        "result equals single-process training with the same spec.",
    )
    p.add_argument("--config", metavar="FILE", help="spec file (.yaml, .toml, .json)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a spec entry, e.g. --set train.batch_size=512 (repeatable)")
    p.add_argument("--data", metavar="NAME", help="data set: digits, mnist5k, mnist, or a file")
    add_train_flags(p, ("epochs", "seed", "threads"))
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    p.add_argument("--out", metavar="FILE", help="write the trained state (rank 0) with torch.save")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        raw = load_spec(args.config) if args.config else {}
        sets = list(args.overrides)
        if args.data is not None:
            sets.append(f"data.name={args.data}")
        sets += train_sets(args, ("epochs", "seed", "threads"))
        raw = apply_overrides(raw, sets)
        rank, world, device = init_process_group(args.device)
        spec, vae, train, test = build(raw)
        t = spec["train"]
        config = dataclasses.replace(check_train_section(spec), device=device)
        trainer = DistributedTrainer(
            vae, train.x, config=config, test_data=None if test is None else test.x,
            objective=spec["objective"], kl_weight=spec["kl_weight"],
            progress=not args.quiet and rank == 0,
        )
        history = trainer.run()
    except PyrovaeError as exc:
        print(f"pyrovae.cli.distributed: error: {exc}", file=sys.stderr)
        if dist.is_initialized():
            dist.destroy_process_group()
        return 2
    if rank == 0:
        last = history.last
        print(f"world size {world} ({dist.get_backend()}), global batch {t['batch_size']}, "
              f"{trainer.step} steps, {last.get('seconds', 0.0):.1f} s, "
              f"train loss {last.get('train_loss', float('nan')):.3f} nats/example"
              + (f", test ELBO {last['test_elbo']:.3f}" if "test_elbo" in last else ""))
        if args.out:
            torch.save({"model": vae.state_dict(), "spec": spec, "history": history.to_dict(),
                        "world_size": world}, args.out)
            print(f"saved {args.out}")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
