"""The semi-supervised VAE M2 (Kingma et al. 2014): a class label that is a discrete
latent where the data do not carry it, summed out exactly.

Generative model (sites of the Pyro model; ``y`` is observed on labelled rows)::

    y_i ~ Cat(π)                    (π uniform)                 site "y" / "y_labelled"
    z_i ~ p(z)                      (the prior family)          site "z" / "z_labelled"
    x_i ~ p_θ(x | y_i, z_i)         (the likelihood family)     site "x" / "x_labelled"

Guide::

    y_i ~ q_φ(y | x_i)              (the classifier)            site "y"  (unlabelled rows)
    z_i ~ q_φ(z | x_i, y_i)         (the encoder, y one-hot)    site "z" / "z_labelled"

A minibatch may mix labelled and unlabelled rows: a label of ``-1``
(:data:`UNLABELLED`) marks a row whose label is latent.  Labelled rows go through
the plate ``"labelled"``, unlabelled ones through ``"unlabelled"``; both are scaled
by ``num_data / batch`` (every row is a uniform draw from the data set), so the
objective is, as in Kingma et al. (2014, eq. 9),

    J = Σ_labelled L(x, y) + Σ_unlabelled U(x) + α Σ_labelled log q_φ(y | x)

with L(x, y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) − KL(q(z|x,y) ‖ p(z)) and
U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x)).  The guide's site ``"y"`` is marked for
parallel enumeration, so Pyro's ``TraceEnum_ELBO`` (:meth:`SemiSupervisedVAE.stock_elbo`)
sums the ten classes out exactly instead of sampling them; the fast engine computes
the same sum directly (:mod:`pyrovae.estimators.enumerated`, equal on the same draws,
``tests/model/test_m2.py``).  The auxiliary term α·log q(y|x) is the
observed model site ``"classify"`` scaled by α, as in Pyro's ss-vae example.

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models* (model M2).
    Obermeyer et al. (2019), *Tensor Variable Elimination for Plated Factor Graphs*
    (Pyro's enumeration, ``TraceEnum_ELBO``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyrovae.data.labels import UNLABELLED, check_class_labels
from pyrovae.errors import PyrovaeError
from pyrovae.model.nets import ACTIVATIONS
from pyrovae.model.spec import ModelSpec
from pyrovae.model.vae import VAE, _kl_scale, spec_from_args
from pyrovae.registry import MODELS, NETWORKS, PRIORS, Param

__all__ = ["UNLABELLED", "SemiSupervisedVAE"]



@MODELS.register("m2")
class SemiSupervisedVAE(VAE):
    """M2 (Kingma et al. 2014): a VAE whose class label is a latent where data lack it.

    p(y) p(z) p_θ(x | y, z) with guide q_φ(y | x) q_φ(z | x, y); unlabelled rows
    (label −1) have y summed out exactly.

    Args:
        data_dim, latent_dim, encoder, decoder, activation, prior, likelihood, guide:
            as for :class:`~pyrovae.model.vae.VAE`; the encoder and decoder get the
            label one-hot as their context.
        classes: the number of classes K.
        classify_weight: the weight α of the auxiliary log q_φ(y | x) per labelled example (Pyro's
            ss-vae example uses 46 on MNIST; Kingma et al. use 0.1·N/N_labelled).
        labelled_fraction, labelled_count: how many training labels a run keeps
            (read by the run pipeline, :func:`pyrovae.data.mask_labels`; ``fit``
            takes the labels you give it).
        classifier_hidden, classifier_activation: the MLP of q_φ(y | x).

    Example:
        >>> m2 = SemiSupervisedVAE(784, 50, classes=10, classify_weight=46.0)
        >>> y = torch.tensor([3, -1, -1, 7])        # rows 1 and 2 unlabelled
        >>> fit(m2, x, y=y, epochs=10)
        >>> m2.label_posterior(x_test).probs.argmax(-1)

    References:
        Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
        Generative Models*.
    """

    params: ClassVar[dict[str, Param]] = {
        "classes": Param("positive_int", 10, doc="number of classes K", size="width"),
        "classify_weight": Param("nonneg_float", 46.0,
                       doc="weight of log q(y|x) per labelled example (Pyro's ss-vae: 46)"),
        "labelled_fraction": Param("unit_float", 0.1,
                                   doc="fraction of the training rows that keep their label"),
        "labelled_count": Param("positive_int", None, nullable=True,
                                doc="labels kept, balanced over classes (replaces the "
                                    "fraction; Pyro's tutorial: 100, 600, 1000, 3000)"),
        "classifier_hidden": Param("int_list", [256], doc="hidden sizes of q(y|x)",
                                   size="widths"),
        "classifier_activation": Param("choice", "relu", choices=tuple(sorted(ACTIVATIONS)),
                                       doc="activation of q(y|x)"),
    }
    #: Whether the label is a discrete latent site summed out by enumeration (read by the
    #: estimators and engines, never the class name).
    label_latent: ClassVar[bool] = True
    #: The kind's own direct estimator, the label enumerated (:mod:`pyrovae.estimators.enumerated`).
    own_loss: ClassVar[str | None] = "enumerated"

    def __init__(
        self,
        data_dim: int | Sequence[int],
        latent_dim: int = 2,
        *,
        classes: int = 10,
        classify_weight: float = 46.0,
        labelled_fraction: float = 0.1,
        labelled_count: int | None = None,
        classifier_hidden: Sequence[int] = (256,),
        classifier_activation: str = "relu",
        encoder: Sequence[int] | Mapping[str, Any] | nn.Module = (128, 64),
        decoder: Sequence[int] | Mapping[str, Any] | nn.Module | None = None,
        activation: str = "relu",
        prior: Any = "normal",
        likelihood: Any = "bernoulli",
        guide: Any = "diagonal_normal",
    ) -> None:
        nn.Module.__init__(self)
        spec, ready = spec_from_args(
            data_dim, latent_dim, encoder=encoder, decoder=decoder, activation=activation,
            decoder_activation=None, prior=prior, likelihood=likelihood, guide=guide,
            context=None, model={
                "family": "m2", "classes": classes, "classify_weight": classify_weight,
                "labelled_fraction": labelled_fraction, "labelled_count": labelled_count,
                "classifier_hidden": list(classifier_hidden),
                "classifier_activation": classifier_activation,
            })
        self._assemble(spec, ready)

    def _assemble(self, s: ModelSpec, ready: Mapping[str, nn.Module]) -> None:
        """The VAE's parts (the label as the networks' context, set by ``complete_spec``)
        and the classifier q(y|x)."""
        super()._assemble(s, ready)
        entry = self.kind_entry
        self.classes, self.classify_weight = entry["classes"], float(entry["classify_weight"])
        self.classifier = NETWORKS.build(
            {"family": "mlp", "hidden": entry["classifier_hidden"],
             "activation": entry["classifier_activation"]},
            "model.classifier_hidden", role="encoder", out_features=self.classes,
            event_shape=self.event_shape, latent_dim=self.latent_dim, context_dim=0,
        )

    @staticmethod
    def check_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
        """The ``model`` entry validated (``labelled_fraction`` 0 is refused)."""
        return MODELS.normalize(dict(entry), "model")

    @staticmethod
    def check_params(params: Mapping[str, Any], path: str) -> None:
        """Cross-parameter checks of the ``model`` entry (the registry calls it)."""
        if params["labelled_fraction"] <= 0 and params["labelled_count"] is None:
            raise PyrovaeError(f"{path}.labelled_fraction: expected a fraction in (0, 1], got "
                               f"{params['labelled_fraction']} (with no labels, train the "
                               "unconditional VAE: model: vae)")
        if params["classes"] < 2:
            raise PyrovaeError(f"{path}.classes: expected at least 2 classes, got "
                               f"{params['classes']}")

    @classmethod
    def complete_spec(cls, spec: dict[str, Any]) -> None:
        """The label is the networks' context: ``context`` becomes
        ``{family: label, classes: K}`` (another context is refused)."""
        m, ctx = spec["model"], spec.get("context") or {"family": "none"}
        want = {"family": "label", "classes": m["classes"]}
        if ctx.get("family") not in ("none", "label"):
            raise PyrovaeError(
                f"context: model m2 sums its label out by enumeration, which needs a discrete "
                f"site with {m['classes']} classes; context {ctx.get('family')!r} is not one "
                f"(leave context out, or give {{family: label, classes: {m['classes']}}})")
        if ctx.get("family") == "label" and ctx.get("classes") != m["classes"]:
            raise PyrovaeError(
                f"context: an m2 model conditions its networks on its own label "
                f"({m['classes']} classes); leave context out or give "
                f"{{family: label, classes: {m['classes']}}}, got {ctx}")
        if PRIORS.get(spec["prior"]["family"]).encodes_inputs:
            raise PyrovaeError(f"prior.family: {spec['prior']['family']!r} cannot be used with "
                               "model: m2 (it encodes pseudo-inputs; the networks are "
                               "conditioned on the label)")
        spec["context"] = want

    # --------------------------------------------------------- distributions
    def label_prior(self) -> dist.Categorical:
        """p(y): uniform over the classes."""
        p = next(self.parameters())
        return dist.Categorical(logits=torch.zeros(self.classes, device=p.device, dtype=p.dtype))

    def label_posterior(self, x: torch.Tensor) -> dist.Categorical:
        """q_φ(y | x), batch shape ``(len(x),)``."""
        x = self.as_event(x)
        return dist.Categorical(logits=self.classifier(x))

    def check_labels(self, y: Any, what: str = "y") -> torch.Tensor:
        """``y`` as class indices in 0..K−1 or −1 (unlabelled), else a PyrovaeError."""
        return check_class_labels(y, self.classes, what)

    def encode_with(self, x: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z | x, y) for labels ``y`` whose shape broadcasts with x's batch (e.g. an
        enumerated ``(K, 1)``); batch shape the broadcast shape."""
        x = self.as_event(x)
        batch = x.shape[: x.ndim - len(self.event_shape)]
        shape = torch.broadcast_shapes(y.shape, batch)
        xb = x.expand(*shape, *self.event_shape)
        return self.encode(xb, y.expand(shape))

    # ------------------------------------------------------------ pyro pair
    def model(
        self,
        x: torch.Tensor | None = None,
        y: Any = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> torch.Tensor | None:
        """p(y) p(z) p_θ(x | y, z) with y observed where ``y >= 0``; ``x=None`` samples
        ``batch_size`` images (or one per row of ``y``)."""
        pyro.module("vae", self)
        device = self.param_device()
        if x is None:
            n = batch_size if y is None else len(y)
            with pyro.plate("unlabelled", n, device=device):
                yy = pyro.sample("y", self.label_prior(),
                                 obs=None if y is None else torch.as_tensor(y, device=device))
                z = pyro.sample("z", self.prior_dist())
                return pyro.sample("x", self.decode(z, y=yy))
        x = self.as_event(x)
        n = x.shape[0]
        y = (torch.full((n,), UNLABELLED, dtype=torch.long, device=x.device) if y is None
             else self.check_labels(y).to(x.device))
        lab = y >= 0
        scale = 1.0 if num_data is None else num_data / n
        with poutine.scale(scale=scale):
            if bool(lab.any()):
                xl, yl = x[lab], y[lab]
                with pyro.plate("labelled", len(yl), device=device):
                    pyro.sample("y_labelled", self.label_prior(), obs=yl)
                    with _kl_scale(kl_weight):
                        z = pyro.sample("z_labelled", self.prior_dist())
                    pyro.sample("x_labelled", self.decode(z, xl, y=yl), obs=xl)
                    if self.classify_weight > 0:
                        with poutine.scale(scale=self.classify_weight):
                            pyro.sample("classify", self.label_posterior(xl), obs=yl)
            if not bool(lab.all()):
                xu = x[~lab]
                with pyro.plate("unlabelled", len(xu), device=device):
                    yu = pyro.sample("y", self.label_prior())
                    with _kl_scale(kl_weight):
                        z = pyro.sample("z", self.prior_dist())
                    pyro.sample("x", self.decode(z, xu, y=yu), obs=xu)
        return None

    def guide(
        self,
        x: torch.Tensor,
        y: Any = None,
        *,
        num_data: int | None = None,
        kl_weight: float = 1.0,
        batch_size: int = 1,
    ) -> None:
        """q_φ(y | x) (unlabelled rows; site ``"y"`` marked for parallel enumeration)
        and q_φ(z | x, y)."""
        pyro.module("vae", self)
        x = self.as_event(x)
        n = x.shape[0]
        device = x.device
        y = (torch.full((n,), UNLABELLED, dtype=torch.long, device=device) if y is None
             else self.check_labels(y).to(device))
        lab = y >= 0
        scale = 1.0 if num_data is None else num_data / n
        with poutine.scale(scale=scale):
            if bool(lab.any()):
                xl, yl = x[lab], y[lab]
                with pyro.plate("labelled", len(yl), device=device), _kl_scale(kl_weight):
                    pyro.sample("z_labelled", self.encode(xl, yl))
            if not bool(lab.all()):
                xu = x[~lab]
                with pyro.plate("unlabelled", len(xu), device=device):
                    yu = pyro.sample("y", self.label_posterior(xu),
                                     infer={"enumerate": "parallel"})
                    with _kl_scale(kl_weight):
                        pyro.sample("z", self.encode_with(xu, yu))

    def stock_elbo(self, num_particles: int = 1) -> pyro.infer.ELBO:
        """Pyro's loss for this pair: ``TraceEnum_ELBO`` (the label summed out exactly)."""
        # a minibatch of labelled rows only has no site to enumerate: not a mistake here
        return pyro.infer.TraceEnum_ELBO(max_plate_nesting=1, num_particles=num_particles,
                                         vectorize_particles=num_particles > 1,
                                         strict_enumeration_warning=False)

    # ---------------------------------------------------------- conveniences
    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q_φ(y | x), shape ``(len(x),)``."""
        return self.label_posterior(x).probs.argmax(-1)

    @torch.no_grad()
    def style(self, x: torch.Tensor) -> torch.Tensor:
        """Each image's style z = E_q[z | x, ŷ] (ŷ its predicted class) decoded with
        every label: ``(len(x), K, *event_shape)`` (Kingma et al. 2014, Fig. 1)."""
        x = self.as_event(x)
        q = self.encode(x, self.classify(x))
        z = q.mean.unsqueeze(1).expand(-1, self.classes, -1)
        labels = torch.arange(self.classes, device=x.device).expand(len(x), -1)
        return self.likelihood.mean(self.decode(z, y=labels))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: Any = None, *,
                    sample: bool = False) -> torch.Tensor:
        """Mean of p_θ(x | y, z) at z = E_q[z | x, y]; ``y=None``: the predicted class."""
        return super().reconstruct(x, self.classify(x) if y is None else y, sample=sample)

    @torch.no_grad()
    def sample(self, n: int, *, y: Any = None, mean: bool = True) -> torch.Tensor:
        """``n`` draws from the generative model; ``y=None`` draws the labels from p(y)."""
        if y is None:
            y = self.label_prior().sample((n,))
        return super().sample(n, y=y, mean=mean)

    def guide_parameters(self) -> list[nn.Parameter]:
        """φ: encoder, classifier and guide-family parameters."""
        return super().guide_parameters() + list(self.classifier.parameters())
