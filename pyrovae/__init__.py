"""pyrovae: the variational autoencoder, intuitive and checkable, in Pyro.

    spec ──> VAE (Pyro model + guide) ──> fit (SVI) ──> run folder
    run folder or (model, guide, data) ──> evaluate (ELBO, IWAE) / posterior checks
"""

from pyrovae.data import Dataset, load_dataset, train_test_split
from pyrovae.errors import PyrovaeError
from pyrovae.evaluate import evaluate
from pyrovae.families import list_families
from pyrovae.pipeline import resume_run, train_run
from pyrovae.registry import GUIDES, LIKELIHOODS, OBJECTIVES, PRIORS, SCHEDULES, Param
from pyrovae.runs import load_run
from pyrovae.spec import apply_overrides, load_spec, normalize_spec
from pyrovae.train import History, Trainer, fit
from pyrovae.vae import VAE

__version__ = "0.1.0"

__all__ = [
    "GUIDES",
    "LIKELIHOODS",
    "OBJECTIVES",
    "PRIORS",
    "SCHEDULES",
    "VAE",
    "Dataset",
    "History",
    "Param",
    "PyrovaeError",
    "Trainer",
    "apply_overrides",
    "evaluate",
    "fit",
    "list_families",
    "load_dataset",
    "load_run",
    "load_spec",
    "normalize_spec",
    "resume_run",
    "train_run",
    "train_test_split",
]
