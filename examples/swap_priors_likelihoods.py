"""Swap priors, likelihoods and guides declaratively, and compare them on held-out digits.

Every model below is the same spec with one or two words changed; each is trained
with ``pyrovae.fit`` on the bundled 8x8 digits and scored on a held-out split with
``pyrovae.estimators.evaluate``: the ELBO and the IWAE estimate of log p(x) with K samples
(Burda et al. 2016), both in nats per image (higher is better).

Numbers are comparable only between rows with the same ``data`` column: binary
pixels (Bernoulli), raw levels 0..16 (Binomial, Categorical: probabilities of
discrete values) and [0, 1] intensities (continuous Bernoulli, Gaussian: densities)
are different data, and a density is not a probability.

    python examples/swap_priors_likelihoods.py --epochs 100
    python examples/swap_priors_likelihoods.py --quick      # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from typing import Any

import torch

import pyrovae

#: (prior, likelihood, guide, data transform): the rows of the table.
COMBOS: list[tuple[Any, Any, Any, str]] = [
    ("normal", "bernoulli", "diagonal_normal", "binarize"),
    ({"family": "student_t", "df": 3.0}, "bernoulli", "diagonal_normal", "binarize"),
    ({"family": "mixture", "components": 10}, "bernoulli", "diagonal_normal", "binarize"),
    ({"family": "vamp", "components": 50}, "bernoulli", "diagonal_normal", "binarize"),
    ({"family": "flow", "flow": "affine_autoregressive"}, "bernoulli", "diagonal_normal",
     "binarize"),
    ("normal", "bernoulli", "full_covariance", "binarize"),
    ("normal", "bernoulli", "flow", "binarize"),
    ({"family": "vamp", "components": 50}, "bernoulli", "flow", "binarize"),
    ("normal", {"family": "binomial", "total_count": 16}, "diagonal_normal", "none"),
    ({"family": "mixture", "components": 10}, {"family": "binomial", "total_count": 16},
     "diagonal_normal", "none"),
    ("normal", {"family": "categorical", "levels": 17}, "diagonal_normal", "none"),
    ("normal", "continuous_bernoulli", "diagonal_normal", "unit"),
    ("normal", {"family": "gaussian", "sigma": "calibrated"}, "diagonal_normal", "unit"),
]


def _label(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    rest = ",".join(f"{v}" for k, v in entry.items() if k != "family")
    return f"{entry['family']}({rest})" if rest else entry["family"]


def run(
    epochs: int, num_samples: int, latent_dim: int, seed: int, limit: int | None
) -> list[dict[str, Any]]:
    splits: dict[str, tuple[Any, Any]] = {}
    rows = []
    for prior, likelihood, guide, transform in COMBOS:
        if transform not in splits:
            data = pyrovae.load_dataset("digits", transform=transform)
            train, test = pyrovae.train_test_split(data, test_fraction=0.2, seed=0)
            if limit:
                train = train.subset(torch.arange(min(limit, len(train))))
                test = test.subset(torch.arange(min(limit, len(test))))
            splits[transform] = (train, test)
        train, test = splits[transform]
        spec = {
            "latent_dim": latent_dim,
            "encoder": {"hidden": [128, 64]},
            "decoder": {"hidden": [64, 128]},
            "prior": copy.deepcopy(prior),
            "likelihood": copy.deepcopy(likelihood),
            "guide": copy.deepcopy(guide),
        }
        torch.manual_seed(seed)
        vae = pyrovae.VAE.from_spec(spec, data_dim=train.data_dim)
        start = time.perf_counter()
        pyrovae.fit(vae, train, epochs=epochs, batch_size=128, lr=1e-3, seed=seed,
                    eval_every=0, progress=False)
        seconds = time.perf_counter() - start
        result = pyrovae.evaluate(vae, test, num_samples=num_samples)
        row = {
            "prior": _label(prior),
            "likelihood": _label(likelihood),
            "guide": _label(guide),
            "data": transform,
            "elbo": result["elbo"],
            "log_likelihood": result["log_likelihood"],
            "se": result["log_likelihood_se"],
            "seconds": seconds,
        }
        rows.append(row)
        print(f"  trained {row['prior']} x {row['likelihood']} x {row['guide']} "
              f"in {seconds:.1f}s", file=sys.stderr, flush=True)
    return rows


def format_table(rows: list[dict[str, Any]], num_samples: int) -> str:
    head = ("prior", "likelihood", "guide", "data", "test ELBO",
            f"test log p(x) (IWAE, K={num_samples})", "train s")
    body = [
        (r["prior"], r["likelihood"], r["guide"], r["data"], f"{r['elbo']:.2f}",
         f"{r['log_likelihood']:.2f} ± {r['se']:.2f}", f"{r['seconds']:.1f}")
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50, help="training epochs per model")
    parser.add_argument("--num-samples", type=int, default=1000, help="K of the IWAE estimate")
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 epoch on 64 images, K=4 (seconds; numbers meaningless)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.num_samples, limit = 1, 4, 64
    else:
        limit = None
    rows = run(args.epochs, args.num_samples, args.latent_dim, args.seed, limit)
    print(f"digits, {args.epochs} epochs, latent_dim={args.latent_dim}, seed={args.seed}; "
          "nats per image, higher is better; compare rows with the same data column")
    print(format_table(rows, args.num_samples))
    assert all(math.isfinite(r["elbo"]) and math.isfinite(r["log_likelihood"]) for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
