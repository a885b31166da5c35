"""The generative model and its guide: networks, priors p(z), likelihoods p_θ(x|z),
guide families q_φ(z|x), and :class:`~pyrovae.model.vae.VAE`, which pairs them as a Pyro
model/guide.  Importing a family module registers its families."""

# The model kinds register themselves (registry MODELS: "vae", "m2", "hierarchical") when
# their modules are imported; importing them here makes every kind known wherever a spec
# is read.
from pyrovae.model import hierarchical as _hierarchical  # noqa: F401
from pyrovae.model import m2 as _m2  # noqa: F401
