"""The fast engine is stock Pyro's Trace_ELBO, computed directly.

* the fast loss (the generic ``differentiable_loss`` and the tensor kernel for the stock
  families) has the value and gradients of ``Trace_ELBO().differentiable_loss``
  on the same draw;
* the fast and pyro engines reach the same parameters from the same init and seed;
* a VAE subclass whose model/guide are not the standard pair falls back to stock
  SVI with a warning; the check leaves RNG, param store and buffers untouched;
* the device path (CUDA tests run only where a GPU is present).
"""

from __future__ import annotations

import copy
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import pyrovae
from pyrovae.estimators.standard import standard_families, standard_loss
from pyrovae.training.engines import (
    FastEngine,
    PyroEngine,
    check_standard_pair,
    make_engine,
)
from pyrovae.training.objectives import (
    TraceELBOObjective,
    TraceMeanFieldObjective,
    _ELBOObjective,
)

D, L, H = 20, 3, [16]


def trace_elbo_standard(vae, x, num_data, kl_weight, num_particles=1, eps=None):
    """Pyro's ``Trace_ELBO`` loss for a VAE with the stock families, as tensor algebra
    (the Monte Carlo KL form of the kernel the fast engine runs)."""
    return standard_loss(vae, x, num_data=num_data, kl_weight=kl_weight,
                         num_particles=num_particles, eps=eps).loss


def standard_kernel(vae, objective):
    """The objective's tensor kernel when the stock families apply and the objective is
    an ELBO without free bits, else ``None`` (what the fast engine chooses)."""
    if (not isinstance(objective, _ELBOObjective) or objective.free_bits > 0
            or not standard_families(vae)):
        return None
    return objective.loss_fn(vae)


def _data(n: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, D, generator=g) > 0.5).float()


def _vae(seed: int = 0, cls=pyrovae.VAE, **kw) -> pyrovae.VAE:
    torch.manual_seed(seed)
    return cls(D, L, encoder=H, **kw)


def _loss_and_grads(vae, fn, seed=1):
    vae.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    with pyro.validation_enabled(False):
        loss = fn()
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in vae.parameters()]


def _assert_same(a, b, rtol=1e-5, atol=1e-5):
    (la, ga), (lb, gb) = a, b
    torch.testing.assert_close(la, lb, rtol=rtol, atol=atol)
    for x, y in zip(ga, gb, strict=True):
        scale = max(1.0, float(x.abs().max()))
        torch.testing.assert_close(x / scale, y / scale, rtol=rtol, atol=atol)


@pytest.mark.parametrize("num_data,kl_weight", [(48, 1.0), (480, 1.0), (480, 0.3), (100, 0.0)])
def test_fast_losses_equal_stock_trace_elbo(num_data, kl_weight):
    vae, x = _vae(), _data()
    kwargs = {"num_data": num_data, "kl_weight": kl_weight}
    stock = _loss_and_grads(
        vae, lambda: pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, **kwargs)
    )
    generic = _loss_and_grads(
        vae, lambda: TraceELBOObjective(kl="mc").differentiable_loss(
                vae, x, num_data=num_data, kl_weight=kl_weight)
    )
    kernel = _loss_and_grads(vae, lambda: trace_elbo_standard(vae, x, num_data, kl_weight))
    _assert_same(stock, generic)
    _assert_same(stock, kernel)
    # the default (closed-form KL) kernel equals stock TraceMeanField_ELBO
    meanfield = _loss_and_grads(
        vae, lambda: pyro.infer.TraceMeanField_ELBO().differentiable_loss(
            vae.model, vae.guide, x, **kwargs)
    )
    default = _loss_and_grads(
        vae, lambda: TraceELBOObjective().differentiable_loss(
                vae, x, num_data=num_data, kl_weight=kl_weight)
    )
    assert standard_kernel(vae, TraceELBOObjective()) is not None
    _assert_same(meanfield, default)


@pytest.mark.parametrize("kl", ["mc", "auto"])
def test_kernel_equals_generic_fast_loss_with_particles(kl):
    vae, x = _vae(), _data()
    obj = TraceELBOObjective(num_particles=3, kl=kl)
    kernel = standard_kernel(vae, obj)
    assert kernel is not None and kernel.__name__ == "standard"
    generic = _vae(cls=TidyEncode)  # same init; encode overridden: distribution objects
    generic.load_state_dict(vae.state_dict())
    generic_fn = obj.loss_fn(generic)
    assert generic_fn.__name__ == "_generic"
    a = _loss_and_grads(generic, lambda: generic_fn(generic, x, None, 500, 0.5).loss)
    b = _loss_and_grads(vae, lambda: kernel(vae, x, None, 500, 0.5).loss)
    _assert_same(a, b)


@pytest.mark.parametrize(
    "kw,obj",
    [
        ({"likelihood": "gaussian"}, TraceELBOObjective()),
        ({"prior": "normal_learned"}, TraceELBOObjective()),
        ({"guide": "full_covariance"}, TraceELBOObjective()),
        ({}, TraceELBOObjective(free_bits=0.1)),
    ],
)
def test_kernel_only_for_stock_families(kw, obj):
    vae = _vae(**kw)
    assert standard_kernel(vae, obj) is None
    engine = make_engine("fast", vae, obj, 1e-3, sample=_data(4))
    assert isinstance(engine, FastEngine) and engine.loss_fn.__name__ != "standard"
    assert standard_kernel(_vae(), TraceMeanFieldObjective()) is not None


@pytest.mark.parametrize("kl_weight,optim", [
    (1.0, {}),
    ({"family": "linear", "warmup_epochs": 2}, {}),
    # the optimiser and schedule are the same in both engines (one torch AdamW over all
    # parameters, or Pyro's per parameter: the same update)
    (1.0, {"optimizer": "adamw", "weight_decay": 0.1, "betas": [0.8, 0.99],
           "lr_schedule": "exponential", "lr_gamma": 0.5}),
], ids=["adam", "adam-warmup", "adamw-exponential"])
def test_fast_and_pyro_engines_reach_the_same_parameters(kl_weight, optim):
    x = _data(64)
    init = _vae(3)
    runs = {}
    for engine in ("fast", "pyro"):
        vae = copy.deepcopy(init)
        pyrovae.fit(vae, x, epochs=3, batch_size=16, lr=1e-2, seed=7, engine=engine,
                    kl_weight=kl_weight, eval_every=None, progress=False, **optim)
        runs[engine] = dict(vae.named_parameters())
    moved = max(float((runs["fast"][k] - p).detach().abs().max())
                for k, p in init.named_parameters())
    assert moved > 1e-2  # 12 Adam steps at lr 1e-2 really moved the parameters
    for k, p in runs["fast"].items():
        torch.testing.assert_close(p, runs["pyro"][k], rtol=1e-4, atol=1e-5, msg=k)


class ExtraFactor(pyrovae.VAE):
    """Adds a factor to the model: not the pair the fast estimator assumes."""

    def model(self, x=None, **kw):
        pyro.factor("penalty", -(self.decoder[0].weight ** 2).sum())
        return super().model(x, **kw)


class ExtraGuideSite(pyrovae.VAE):
    def guide(self, x, **kw):
        pyro.sample("tau", dist.Normal(0.0, 1.0))
        return super().guide(x, **kw)


class TemperedModel(pyrovae.VAE):
    """Same sites, but the likelihood is tempered inside the model only."""

    def model(self, x=None, **kw):
        with poutine.scale(scale=0.5):
            return super().model(x, **kw)


class TidyEncode(pyrovae.VAE):
    """Overrides encode consistently (the guide uses it too): still the standard pair."""

    def encode(self, x):
        return super().encode(x)


@pytest.mark.parametrize("cls", [ExtraFactor, ExtraGuideSite, TemperedModel])
def test_nonstandard_subclass_falls_back_to_pyro(cls):
    vae, x = _vae(cls=cls), _data(32)
    assert check_standard_pair(vae, x[:8]) is not None
    with pytest.warns(RuntimeWarning, match="stock Pyro SVI"):
        trainer = pyrovae.Trainer(vae, x, epochs=1, batch_size=16, eval_every=None,
                                  progress=False)
    assert trainer.engine.name == "pyro"
    trainer.run()


def test_consistent_subclass_keeps_fast_engine_with_generic_loss():
    vae, x = _vae(cls=TidyEncode), _data(32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        trainer = pyrovae.Trainer(vae, x, epochs=1, batch_size=16, eval_every=None,
                                  progress=False)
    assert isinstance(trainer.engine, FastEngine)
    assert trainer.engine.loss_fn.__name__ == "_generic"  # no kernel: encode overridden


def test_check_leaves_rng_param_store_and_buffers_alone():
    vae = _vae(likelihood={"family": "bernoulli", "dynamic_binarization": True})
    x = torch.rand(16, D)
    pyro.clear_param_store()
    pyro.param("someone_elses", torch.ones(2))
    state = torch.get_rng_state()
    buffers = {k: v.clone() for k, v in vae.named_buffers()}
    assert check_standard_pair(vae, x) is None
    assert torch.equal(torch.get_rng_state(), state)
    assert list(pyro.get_param_store().keys()) == ["someone_elses"]
    for k, v in vae.named_buffers():
        assert torch.equal(v, buffers[k])
    pyro.clear_param_store()


def test_engine_choice():
    vae, x = _vae(), _data(8)
    assert isinstance(make_engine("fast", vae, TraceELBOObjective(), 1e-3, sample=x), FastEngine)
    assert isinstance(make_engine("pyro", vae, TraceELBOObjective(), 1e-3), PyroEngine)
    from pyrovae.training.objectives import TraceGraphObjective

    assert isinstance(make_engine("fast", vae, TraceGraphObjective(), 1e-3), PyroEngine)


def test_fit_on_explicit_cpu_device_is_deterministic():
    x = _data(64)
    a, b = _vae(1), _vae(1)
    for vae in (a, b):
        pyrovae.fit(vae, x, epochs=2, batch_size=16, seed=3, device="cpu", eval_every=None,
                    progress=False)
    for (k, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), k


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_fit_on_cuda_keeps_everything_on_the_gpu():  # pragma: no cover - not run on CPU CI
    vae, x = _vae(), _data(64)
    history = pyrovae.fit(vae, x, epochs=2, batch_size=16, device="cuda", eval_every=1,
                          progress=False)
    assert all(p.device.type == "cuda" for p in vae.parameters())
    assert torch.isfinite(torch.tensor(history["train_loss"])).all()


@cuda
def test_kernel_equals_trace_elbo_on_cuda():  # pragma: no cover - not run on CPU CI
    vae, x = _vae().cuda(), _data().cuda()
    stock = _loss_and_grads(
        vae,
        lambda: pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x,
                                                             num_data=480, kl_weight=0.3),
    )
    kernel = _loss_and_grads(vae, lambda: trace_elbo_standard(vae, x, 480, 0.3))
    _assert_same(stock, kernel, rtol=1e-4, atol=1e-4)


def test_fast_engine_refuses_an_objective_without_a_direct_estimator():
    """TraceGraph_ELBO runs through stock SVI only: the fast engine says so in a
    PyrovaeError (a user's mistake, not a bug)."""
    from pyrovae.errors import PyrovaeError
    from pyrovae.training.objectives import TraceGraphObjective

    msg = r"'tracegraph_elbo' has no direct estimator.*pyro engine"
    with pytest.raises(PyrovaeError, match=msg):
        FastEngine(_vae(), TraceGraphObjective(), lr=1e-3)
