"""pyrovae: the variational autoencoder, intuitive and checkable, in Pyro.

    spec ──> VAE (Pyro model + guide) ──> fit (SVI) ──> run folder
    run folder or (model, guide, data) ──> evaluate (ELBO, IWAE) / posterior checks

The public names below are imported lazily (PEP 562), so ``import pyrovae`` is
fast and loads torch, Pyro or matplotlib only when a name that needs them is used.
The package's layers are described in ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pyrovae.errors import PyrovaeError

__version__ = "0.2.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "GUIDES": "pyrovae.registry",
    "LIKELIHOODS": "pyrovae.registry",
    "OBJECTIVES": "pyrovae.registry",
    "PRIORS": "pyrovae.registry",
    "SCHEDULES": "pyrovae.registry",
    "NETWORKS": "pyrovae.registry",
    "CONTEXTS": "pyrovae.registry",
    "Param": "pyrovae.registry",
    "Progress": "pyrovae.progress",
    "ArrayDataset": "pyrovae.data",
    "LoaderSource": "pyrovae.data",
    "as_source": "pyrovae.data",
    "Dataset": "pyrovae.data",
    "load_dataset": "pyrovae.data",
    "train_test_split": "pyrovae.data",
    "VAE": "pyrovae.model.vae",
    "load_vae": "pyrovae.model.vae",
    "evaluate": "pyrovae.estimators.evaluate",
    "History": "pyrovae.training.history",
    "Trainer": "pyrovae.training.trainer",
    "TrainConfig": "pyrovae.training.config",
    "DivergenceError": "pyrovae.training.guard",
    "fit": "pyrovae.training.trainer",
    "apply_overrides": "pyrovae.runs.spec",
    "load_spec": "pyrovae.runs.spec",
    "normalize_spec": "pyrovae.runs.spec",
    "list_families": "pyrovae.runs.families",
    "load_run": "pyrovae.runs.folder",
    "resume_run": "pyrovae.runs.pipeline",
    "train_run": "pyrovae.runs.pipeline",
    "ais": "pyrovae.posterior.ais",
    "bdmc": "pyrovae.posterior.bdmc",
    "certified_ais": "pyrovae.posterior.certified",
    "sbc": "pyrovae.posterior.sbc",
    "collapse_diagnostics": "pyrovae.posterior.collapse",
    "collapse_callback": "pyrovae.posterior.collapse",
    "check_vae": "pyrovae.runs.check",
}

#: sub-packages reachable as attributes (``pyrovae.posterior``, ``pyrovae.toy``, ...)
_SUBPACKAGES = (
    "data", "estimators", "io", "model", "plots", "posterior", "quadrature", "registry",
    "runs", "toy", "training", "cli",
)

__all__ = [
    "CONTEXTS",
    "GUIDES",
    "LIKELIHOODS",
    "NETWORKS",
    "OBJECTIVES",
    "PRIORS",
    "SCHEDULES",
    "VAE",
    "ArrayDataset",
    "Dataset",
    "DivergenceError",
    "History",
    "LoaderSource",
    "Param",
    "Progress",
    "PyrovaeError",
    "TrainConfig",
    "Trainer",
    "ais",
    "apply_overrides",
    "as_source",
    "bdmc",
    "certified_ais",
    "check_vae",
    "collapse_callback",
    "collapse_diagnostics",
    "evaluate",
    "fit",
    "list_families",
    "load_dataset",
    "load_run",
    "load_spec",
    "load_vae",
    "normalize_spec",
    "resume_run",
    "sbc",
    "train_run",
    "train_test_split",
]


#: registries filled by importing the family modules (the spec assembly imports them all)
_REGISTRIES = {"GUIDES", "LIKELIHOODS", "OBJECTIVES", "PRIORS", "SCHEDULES", "NETWORKS",
               "CONTEXTS"}


def __getattr__(name: str) -> Any:
    if name in _REGISTRIES:
        importlib.import_module("pyrovae.runs.spec")  # registers every family
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"pyrovae.{name}")
    raise AttributeError(f"module 'pyrovae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBPACKAGES))


if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from pyrovae.data import (
        ArrayDataset,
        Dataset,
        LoaderSource,
        as_source,
        load_dataset,
        train_test_split,
    )
    from pyrovae.estimators.evaluate import evaluate
    from pyrovae.model.vae import VAE, load_vae
    from pyrovae.progress import Progress
    from pyrovae.registry import (
        CONTEXTS,
        GUIDES,
        LIKELIHOODS,
        NETWORKS,
        OBJECTIVES,
        PRIORS,
        SCHEDULES,
        Param,
    )
    from pyrovae.runs.families import list_families
    from pyrovae.runs.folder import load_run
    from pyrovae.runs.pipeline import resume_run, train_run
    from pyrovae.runs.spec import apply_overrides, load_spec, normalize_spec
    from pyrovae.training.config import TrainConfig
    from pyrovae.training.guard import DivergenceError
    from pyrovae.training.history import History
    from pyrovae.training.trainer import Trainer, fit
