"""Semi-supervised learning on the bundled digits: M2 (Kingma et al. 2014) with 10% of
the training labels, against a supervised-only classifier of the same network trained on
those labels alone, and against the unconditional VAE of the same size.

M2 is trained from ``examples/configs/digits_m2.yaml`` through the run pipeline (the
same as ``pyrovae train --config examples/configs/digits_m2.yaml``); its unlabelled
rows have their class summed out exactly.  Reported on the held-out split: the accuracy
and expected calibration error of q(y|x) (and of the supervised classifier), and
log p(x) by IWAE with K samples (for M2 with the label summed out:
log Σ_y p(y) p(x|y), K draws of z per class)::

    python examples/semi_supervised_digits.py                 # the README table
    python examples/semi_supervised_digits.py --epochs 5      # a quick look

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models*.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _output import output_folder
from torch import nn

from pyrovae import VAE
from pyrovae.estimators.classification import classification_metrics
from pyrovae.estimators.evaluate import evaluate
from pyrovae.runs import pipeline
from pyrovae.runs.folder import load_run
from pyrovae.runs.spec import apply_overrides, load_spec
from pyrovae.training.trainer import fit

CONFIG = Path(__file__).parent / "configs" / "digits_m2.yaml"


def supervised_only(spec: dict, train_x: torch.Tensor, labels: torch.Tensor,
                    steps: int, seed: int) -> nn.Module:
    """The M2 classifier's network, trained by cross-entropy on the labelled rows only
    (full batch, Adam at the spec's learning rate, ``steps`` steps)."""
    torch.manual_seed(seed)
    m = VAE.from_spec(spec)  # an M2 of the run's spec: its classifier network
    net = m.classifier
    keep = labels >= 0
    x, y = train_x[keep], labels[keep]
    opt = torch.optim.Adam(net.parameters(), lr=spec["train"]["lr"])
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--labelled-fraction", type=float, default=0.1)
    ap.add_argument("--k", type=int, default=200, help="IWAE samples (per class for M2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = output_folder("semi_supervised_digits", args.out)
    sets = [f"train.epochs={args.epochs}", f"train.seed={args.seed}",
            f"model.labelled_fraction={args.labelled_fraction}",
            f"eval.num_samples={args.k}"]
    raw = apply_overrides(load_spec(CONFIG), sets)

    t0 = time.perf_counter()
    pipeline.train_run(raw, out / "m2", progress=False)
    m2_seconds = time.perf_counter() - t0
    m2, spec, _ = load_run(out / "m2")
    _, train, test = pipeline.load_data(spec)
    metrics = json.loads((out / "m2" / "metrics.json").read_text())
    labels = pipeline.training_labels(spec, m2, train)
    n_lab = int((labels >= 0).sum())
    rows = {"M2 (labelled + unlabelled)": {
        "accuracy": metrics["test"]["classification"]["accuracy"],
        "ece": metrics["test"]["classification"]["ece"],
        "log_px": metrics["test"]["log_likelihood"],
        "log_px_se": metrics["test"]["log_likelihood_se"], "seconds": m2_seconds}}

    t0 = time.perf_counter()
    steps = args.epochs * -(-len(train.x) // spec["train"]["batch_size"])  # M2's step count
    net = supervised_only(spec, train.x, labels, steps, args.seed)
    with torch.no_grad():
        probs = torch.softmax(net(test.x), -1)
    sup = classification_metrics(probs, test.y)
    rows["supervised only (same classifier)"] = {
        "accuracy": sup["accuracy"], "ece": sup["ece"], "log_px": None, "log_px_se": None,
        "seconds": time.perf_counter() - t0}

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    vae_spec = {k: v for k, v in spec.items() if k in
                ("data_dim", "event_shape", "latent_dim", "encoder", "decoder", "prior",
                 "likelihood", "guide")}
    vae = VAE.from_spec(vae_spec)
    fit(vae, train.x, epochs=args.epochs, batch_size=spec["train"]["batch_size"],
        lr=spec["train"]["lr"], seed=args.seed, progress=False, eval_every=0)
    r = evaluate(vae, test.x, num_samples=args.k)
    rows["unconditional VAE (same networks)"] = {
        "accuracy": None, "ece": None, "log_px": r["log_likelihood"],
        "log_px_se": r["log_likelihood_se"], "seconds": time.perf_counter() - t0}

    def fmt(v, f):
        width = int(f.split(".")[0])
        return "–".rjust(width) if v is None else format(v, f)

    print(f"digits, {len(train.x)} training rows of which {n_lab} labelled "
          f"({args.labelled_fraction:.0%}), {len(test.x)} held out; {args.epochs} epochs, "
          f"IWAE K={args.k}")
    print(f"{'model':38s} {'accuracy':>9s} {'ECE':>7s} {'log p(x)':>16s} {'train s':>8s}")
    for name, v in rows.items():
        lp = "–" if v["log_px"] is None else f"{v['log_px']:.2f} ± {v['log_px_se']:.2f}"
        print(f"{name:38s} {fmt(v['accuracy'], '9.3f')} {fmt(v['ece'], '7.3f')} "
              f"{lp:>16s} {v['seconds']:8.1f}")
    (out / "semi_supervised_digits.json").write_text(json.dumps(
        {"labelled": n_lab, "train_rows": len(train.x), "epochs": args.epochs, "k": args.k,
         "rows": rows, "m2_test_classification": metrics["test"]["classification"],
         "supervised_test_classification": sup}, indent=2))
    print(f"figures: {out / 'm2' / 'figures'}")


if __name__ == "__main__":
    main()
