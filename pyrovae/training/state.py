"""Trainer state: capture and restore, at an epoch boundary, everything that decides the
rest of a run (parameters and buffers, optimiser state, every random stream, epoch and
step, history), so that a resumed run is bitwise the uninterrupted one.

The state holds tensors (copies) and plain data only, so that
``torch.load(weights_only=True)`` reads it back (see :mod:`pyrovae.io`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from pyrovae.errors import PyrovaeError
from pyrovae.training.history import History

#: Layout version of the states written by :func:`capture`.
CHECKPOINT_FORMAT = 1

#: Entries every resumable state holds.
STATE_KEYS = (
    "model", "optimizer", "engine", "epoch", "step", "history", "rng_torch", "rng_shuffle",
)


def clone(obj: Any) -> Any:
    """A copy of a nested state: tensors cloned (detached), containers rebuilt."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, Mapping):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(clone(v) for v in obj)
    return obj


def tensors(obj: Any) -> Iterable[torch.Tensor]:
    """Every tensor inside a nested state."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


def python_rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss}


def numpy_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def capture(t: Any) -> dict[str, Any]:
    """Everything :meth:`Trainer.run` needs to continue: tensors (copies) and plain data only,
    so that ``torch.load(weights_only=True)`` reads it back."""
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "model": clone(t.vae.state_dict()),
        "optimizer": clone(_optimizer_state(t)),
        "engine": t.engine.name,
        "epoch": t.epoch,
        "step": t.step,
        "steps_per_epoch": t.steps_per_epoch,
        "num_data": t.num_data,
        "history": t.history.to_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_shuffle": t.shuffle.get_state(),
        "rng_python": python_rng_state(),
        "rng_numpy": numpy_rng_state(),
        "num_threads": torch.get_num_threads(),
    }
    if t.device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(t.device)
    return state


def _optimizer_state(t: Any) -> Any:
    if t._loaded_optimizer is not None and t._loaded_optimizer[0] == t.step:
        return t._loaded_optimizer[1]  # nothing stepped since the load
    return t.engine.state_dict()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def restore(t: Any, state: Mapping[str, Any]) -> None:
    """Restore a state made by :func:`capture` into the trainer ``t``.

    A state that does not fit (other data, batch size, engine, model) raises
    :class:`~pyrovae.errors.PyrovaeError` naming what differs.
    """
    if not isinstance(state, Mapping):
        raise PyrovaeError(f"state: expected a mapping, got {type(state).__name__}")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise PyrovaeError(
            f"state: not a resumable pyrovae state (missing {', '.join(missing)})"
        )
    if state["engine"] != t.engine.name:
        raise PyrovaeError(
            f"state: written by the {state['engine']!r} engine; this trainer uses "
            f"{t.engine.name!r}"
        )
    for key, mine in (("num_data", t.num_data), ("steps_per_epoch", t.steps_per_epoch)):
        if key in state and state[key] != mine:
            raise PyrovaeError(
                f"state: {key} is {state[key]!r}, this trainer has {mine} "
                "(different data or batch size)"
            )
    epoch, step = state["epoch"], state["step"]
    if not (isinstance(epoch, int) and isinstance(step, int) and 0 <= epoch and 0 <= step):
        raise PyrovaeError(f"state: bad epoch/step {epoch!r}/{step!r}")
    if epoch > t.epochs:
        raise PyrovaeError(
            f"epochs: the state is at epoch {epoch}, beyond this trainer's epochs={t.epochs}"
        )
    try:
        history = History.from_dict(state["history"])
    except (AttributeError, TypeError, ValueError):
        raise PyrovaeError("state: unreadable history") from None
    try:
        t.vae.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PyrovaeError(
            f"state: parameters do not match the model ({first_line(exc)})") from None
    # A fresh engine receives the saved optimiser state (for the pyro engine,
    # Pyro's lazily created per-parameter optimisers pick it up at their first
    # step).  The state is copied: torch optimisers keep the tensors they load.
    t.engine = t.make_engine()
    try:
        t.engine.load_state_dict(clone(state["optimizer"]))
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PyrovaeError(f"state: optimiser state does not match ({first_line(exc)})") from None
    try:
        torch.set_rng_state(state["rng_torch"])
        t.shuffle.set_state(state["rng_shuffle"])
        if "rng_python" in state:
            p = state["rng_python"]
            random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()),
                             p["gauss_next"]))
        if "rng_numpy" in state:
            n = state["rng_numpy"]
            np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                                 n["has_gauss"], n["cached_gaussian"]))
        if "rng_cuda" in state and t.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], t.device)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PyrovaeError(
            f"state: bad random-number-generator state ({first_line(exc)})") from None
    t.epoch, t.step = epoch, step
    t.history = history
    t._loaded_optimizer = (step, clone(state["optimizer"]))
