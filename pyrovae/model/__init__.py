"""The generative model and its guide: networks, priors p(z), likelihoods p_θ(x|z),
guide families q_φ(z|x), and :class:`~pyrovae.model.vae.VAE`, which pairs them as a Pyro
model/guide.  Importing a family module registers its families."""
