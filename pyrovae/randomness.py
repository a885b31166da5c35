"""One policy for randomness and devices: every check and estimator draws on a forked,
seeded stream of every device its computation touches, so a seed reproduces a result and
the caller's own random streams (CPU and GPU) are left as they were.

``torch.random.fork_rng(devices=[])`` forks only the CPU generator: a check running on a
GPU would then advance the caller's GPU stream and draw different numbers from the same
seed.  :func:`seeded` forks the CPU and each CUDA device found among the given tensors
and modules (or, with none given, every visible CUDA device), then seeds them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def devices_of(*objects: Any) -> list[torch.device]:
    """The CUDA devices of the given tensors, modules (their parameters) or objects holding
    a module as ``.vae`` (a target), without duplicates; CPU is always forked separately."""
    found: dict[torch.device, None] = {}
    for obj in objects:
        obj = getattr(obj, "vae", obj)
        if isinstance(obj, torch.Tensor):
            tensors = [obj]
        elif isinstance(obj, torch.nn.Module):
            tensors = list(obj.parameters())[:1] + list(obj.buffers())[:1]
        else:
            tensors = []
        for t in tensors:
            if t.device.type == "cuda":
                found[t.device] = None
    return list(found)


@contextlib.contextmanager
def seeded(seed: int | None, *objects: Any) -> Iterator[None]:
    """Run the block on forked random streams of the CPU and of every CUDA device the
    ``objects`` live on, seeded with ``seed`` (``None``: forked but not reseeded).

    Args:
        seed: the value every forked stream starts from, or ``None``.
        objects: tensors, modules or targets whose devices the block draws on.
    """
    devices = devices_of(*objects)
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)  # seeds the CPU and every CUDA device
        yield
