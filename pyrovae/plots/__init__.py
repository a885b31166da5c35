"""Figures (matplotlib's object API: no pyplot state leaks between figures).

* :mod:`pyrovae.plots.training`: learning curve, reconstructions, prior samples, latent map.
* :mod:`pyrovae.plots.posterior`: exact posterior vs guide, the gap that closes.
"""

from pyrovae.plots.common import save_figure

__all__ = ["save_figure"]
