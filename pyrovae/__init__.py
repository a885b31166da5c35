"""pyrovae: the variational autoencoder, intuitive and checkable, in Pyro."""

from pyrovae.errors import PyrovaeError
from pyrovae.registry import GUIDES, LIKELIHOODS, OBJECTIVES, PRIORS, SCHEDULES, Param
from pyrovae.spec import apply_overrides, load_spec, normalize_spec
from pyrovae.vae import VAE

__version__ = "0.1.0"

__all__ = [
    "GUIDES",
    "LIKELIHOODS",
    "OBJECTIVES",
    "PRIORS",
    "SCHEDULES",
    "VAE",
    "Param",
    "PyrovaeError",
    "apply_overrides",
    "load_spec",
    "normalize_spec",
]
