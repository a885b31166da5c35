"""Check a guide q_φ(z|x) against the exact posterior p_θ(z|x), per data point.

    log p_θ(x) = ELBO + KL(q_φ(z|x) ‖ p_θ(z|x))

==================  ===========================================================
module              idea
==================  ===========================================================
``target``          one interface to a VAE, a toy + guide, or any Pyro pair
``sites``           latent sites as a mapping; ravel/unravel to one flat vector
``exact``           ELBO, IWAE, log p(x), KL(q ‖ p(z|x)), the identity check
``psis``            PSIS k̂ per data point, importance-sampling ESS
``local``           per-data-point guides and the loop that fits them
``amortization``    amortization vs approximation gap (Cremer et al. 2018)
``reference``       NUTS reference draws and the ArviZ export (the one ArviZ module)
``ais``             annealed importance sampling: log p(x) at any latent dimension
``bdmc``            bidirectional Monte Carlo: a sandwich that certifies AIS
``certified``       frozen-kernel AIS at a T doubled until the BDMC width is small
``sbc``             simulation-based calibration of the guide (rank ECDF bands)
``collapse``        active units, KL per dimension, rate, distortion, I_q(x; z)
``enumerate``       a discrete latent summed out: log p(x), ELBO, KL and identity per
                    class target, calibration of q(y|x), SBC of q(z|x,y)
==================  ===========================================================

``reference`` is not imported here, so ArviZ loads only when it is used.  The
functions ``ais``, ``bdmc`` and ``sbc`` share their modules' names, so they are
reached as ``pyrovae.ais`` (etc.) or ``from pyrovae.posterior.ais import ais``.  Grid
quadrature lives in :mod:`pyrovae.quadrature` (the toys use it too); the θ-fixed
experiment in :mod:`pyrovae.experiments.theta_fixed`; the full report that
``pyrovae check`` writes in :mod:`pyrovae.runs.check`.
"""

from __future__ import annotations

from pyrovae.posterior.ais import AISResult
from pyrovae.posterior.amortization import amortization_gap, gap_split
from pyrovae.posterior.bdmc import BDMCResult
from pyrovae.posterior.certified import CertifiedAIS, certified_ais
from pyrovae.posterior.collapse import collapse_callback, collapse_diagnostics
from pyrovae.posterior.exact import (
    Estimate,
    check_identity,
    elbo,
    gaussian_kl,
    grid_posteriors,
    iwae,
    kl_to_posterior,
    log_marginal,
)
from pyrovae.posterior.local import LocalGuide, fit_local_guide
from pyrovae.posterior.psis import ess, khat, psis_per_point
from pyrovae.posterior.sbc import SBCResult
from pyrovae.posterior.sites import SiteInfo, dimension_labels, ravel, unravel
from pyrovae.posterior.target import PyroTarget, Target, as_target
from pyrovae.quadrature import GridPosterior, grid_posterior

__all__ = [
    "AISResult",
    "BDMCResult",
    "CertifiedAIS",
    "Estimate",
    "GridPosterior",
    "LocalGuide",
    "PyroTarget",
    "SBCResult",
    "SiteInfo",
    "Target",
    "amortization_gap",
    "as_target",
    "certified_ais",
    "check_identity",
    "collapse_callback",
    "collapse_diagnostics",
    "dimension_labels",
    "elbo",
    "ess",
    "fit_local_guide",
    "gap_split",
    "gaussian_kl",
    "grid_posterior",
    "grid_posteriors",
    "iwae",
    "khat",
    "kl_to_posterior",
    "log_marginal",
    "psis_per_point",
    "ravel",
    "unravel",
]
