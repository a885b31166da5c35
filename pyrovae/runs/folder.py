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

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from pyrovae.errors import PyrovaeError
from pyrovae.io import load_checkpoint

SPEC_FILE = "spec.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
FIGURES_DIR = "figures"


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
    from pyrovae.runs.spec import normalize_spec

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise PyrovaeError(f"{path}: cannot read spec ({str(exc).splitlines()[0]})") from None
    return normalize_spec(raw)


def load_run(path: str | Path) -> tuple[Any, dict[str, Any], Any]:
    """``(vae, spec, history)`` of a run folder, the model rebuilt from its spec."""
    from pyrovae.training.trainer import History
    from pyrovae.model.vae import VAE

    path = check_run_folder(path)
    spec = read_spec(path / SPEC_FILE)
    state = load_checkpoint(path / CHECKPOINT_FILE)
    vae = VAE.from_spec(spec)
    try:
        vae.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise PyrovaeError(
            f"{path}: checkpoint does not match its spec ({str(exc).splitlines()[0]})"
        ) from None
    history = History()
    if (path / HISTORY_FILE).is_file():
        try:
            history = History.from_dict(json.loads((path / HISTORY_FILE).read_text()))
        except (OSError, ValueError, TypeError, AttributeError):
            raise PyrovaeError(f"{path / HISTORY_FILE}: unreadable history") from None
    return vae, spec, history
