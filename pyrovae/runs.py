"""Run folders: the spec, a checkpoint, metrics and figures, written atomically.

Layout of a run folder::

    RUN/spec.yaml        the full spec (rebuilds the model: VAE.from_spec)
    RUN/checkpoint.pt    parameters, optimiser and RNG states, epoch, step (tensors + plain data)
    RUN/history.json     per-epoch records
    RUN/metrics.json     final evaluation (ELBO, IWAE log-likelihood, ...)
    RUN/figures/*.png

Every file is written to a temporary name in the same folder and renamed into
place (``os.replace``), so a killed process never leaves a half-written file.
Checkpoints are loaded with ``torch.load(weights_only=True)``: they never
unpickle arbitrary objects.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from pyrovae.errors import PyrovaeError

SPEC_FILE = "spec.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
FIGURES_DIR = "figures"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    """Load a checkpoint safely (``weights_only=True``): pickled code is refused."""
    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PyrovaeError(
            f"{path}: refused to load checkpoint (not a plain tensor checkpoint: {first})"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise PyrovaeError(f"{path}: not a pyrovae checkpoint (no 'model' entry)")
    return state


def prepare_run_folder(path: str | Path, *, overwrite: bool = False) -> Path:
    """Check that ``path`` may be written; create it.

    An existing non-empty folder is refused unless ``overwrite``; even then only
    a folder that is a pyrovae run (it holds ``spec.yaml``) is cleared.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PyrovaeError(f"run folder {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise PyrovaeError(f"run folder {path} exists; pass --overwrite to replace it")
        if not (path / SPEC_FILE).is_file():
            raise PyrovaeError(
                f"run folder {path} is not empty and is not a pyrovae run; refusing to clear it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_run_folder(path: str | Path) -> Path:
    """The folder of an existing run, or a PyrovaeError naming what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise PyrovaeError(f"run folder not found: {path}")
    for name in (SPEC_FILE, CHECKPOINT_FILE):
        if not (path / name).is_file():
            raise PyrovaeError(f"{path} is not a pyrovae run folder (no {name})")
    return path


def read_spec(path: str | Path) -> dict[str, Any]:
    from pyrovae.spec import normalize_spec

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PyrovaeError(f"{path}: cannot read spec ({str(exc).splitlines()[0]})") from None
    return normalize_spec(raw)


def load_run(path: str | Path) -> tuple[Any, dict[str, Any], Any]:
    """``(vae, spec, history)`` of a run folder, the model rebuilt from its spec."""
    from pyrovae.train import History
    from pyrovae.vae import VAE

    path = check_run_folder(path)
    spec = read_spec(path / SPEC_FILE)
    state = load_checkpoint(path / CHECKPOINT_FILE)
    vae = VAE.from_spec(spec)
    try:
        vae.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise PyrovaeError(
            f"{path}: checkpoint does not match its spec ({str(exc).splitlines()[0]})"
        ) from None
    history = History()
    if (path / HISTORY_FILE).is_file():
        history = History.from_dict(json.loads((path / HISTORY_FILE).read_text()))
    return vae, spec, history
