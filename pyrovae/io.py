"""Atomic file writes and safe checkpoint loading: the I/O every layer shares.

Every file is written to a temporary name in the same folder and renamed into
place (``os.replace``), so a killed process never leaves a half-written file.
Checkpoints are loaded with ``torch.load(weights_only=True)``: they never
unpickle arbitrary objects.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from pyrovae.errors import PyrovaeError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    The temporary file is flushed and fsynced before ``os.replace``, and the
    folder after it, so ``path`` holds either the old or the new content, never
    a mixture, even if the process is killed or the machine stops.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp's 0600 -> the usual mode
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` the state (tensors and plain data only) atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely: ``torch.load(weights_only=True)`` reads tensors and
    plain data only, so a pickle that would import or call anything is refused
    (a PyrovaeError naming the offending object) and its code never runs."""
    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read the file is the file's problem
        raise PyrovaeError(f"{path}: refused to load checkpoint ({_load_problem(exc)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise PyrovaeError(f"{path}: not a pyrovae checkpoint (no 'model' parameters)")
    bad = [k for k, v in state["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise PyrovaeError(f"{path}: not a pyrovae checkpoint ('model' entry {bad[0]!r} "
                           "is not a tensor)")
    return state


def _load_problem(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"(?:Unsupported global|GLOBAL) ([\w.]+)", text)
    if found:
        name = found.group(1)
        return (f"it holds a pickled Python object ({name}) that could run code; "
                "pyrovae checkpoints hold only tensors and plain data")
    if "WeightsUnpickler error:" in text:
        rest = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        detail = rest[0].strip() if rest else "unknown"
        return (f"not a plain tensor checkpoint: {detail}; corrupt, or pickled data "
                "beyond tensors and plain values")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    return f"not a readable torch checkpoint: {first}"
