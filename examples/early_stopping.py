"""Early stopping on the default run: where it stops, what the best epoch is worth,
and the training time it saves.

Trains the default `pyrovae train` job (digits, latent 2, 300 epochs) twice, from the
same seed: once for all its epochs, once with ``early_stopping: {enabled: true,
patience: P}`` (the held-out ELBO, evaluated every epoch).  Prints where the second
stopped, its best epoch's held-out ELBO and IWAE (``pyrovae evaluate RUN --which
best``) against the full run's, and both training times; writes ``early_stopping.json``
and leaves both run folders (with ``history.csv`` and ``tensorboard/``) beside it.

    python examples/early_stopping.py            # 300 epochs, patience 10, K = 1000

References:
    Prechelt (1998). Early Stopping — But When? Neural Networks: Tricks of the Trade.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _output import output_folder

from pyrovae.runs import pipeline
from pyrovae.runs.folder import read_history


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--min-delta", type=float, default=0.0)
    p.add_argument("--k", type=int, default=1000, help="IWAE samples K of the evaluations")
    p.add_argument("--track", default="csv,tensorboard", help="trackers of both runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="output folder (default: a fresh runs/examples/...)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    folder = output_folder("early_stopping", args.out)
    base = {"train": {"epochs": args.epochs, "threads": args.threads},
            "eval": {"num_samples": args.k},
            "track": [t for t in args.track.split(",") if t]}
    full = pipeline.train_run(base, folder / "full", progress=False)
    early = pipeline.train_run(
        {**base, "early_stopping": {"enabled": True, "patience": args.patience,
                                    "min_delta": args.min_delta}},
        folder / "early", progress=False)
    best = pipeline.evaluate_run(folder / "early", which="best")
    h_full = read_history(folder / "full")
    h_early = read_history(folder / "early")
    stop = early.get("stopped_early") or {}
    b = early["best"]["epoch"]
    out = {
        "epochs": args.epochs, "patience": args.patience, "min_delta": args.min_delta,
        "k": args.k,
        "stopped_after_epoch": early["epochs"],
        "best_epoch": b,
        "best_epoch_test_elbo_1_sample": h_early["test_elbo"][b - 1],
        "full_last_test_elbo_1_sample": h_full["test_elbo"][-1],
        "full_best_test_elbo_1_sample": max(h_full["test_elbo"]),
        "full_best_epoch": 1 + h_full["test_elbo"].index(max(h_full["test_elbo"])),
        "early_best_weights": {k: best[k] for k in ("elbo", "log_likelihood",
                                                    "log_likelihood_se")},
        "early_last_weights": {k: early["test"][k] for k in ("elbo", "log_likelihood",
                                                             "log_likelihood_se")},
        "full_last_weights": {k: full["test"][k] for k in ("elbo", "log_likelihood",
                                                           "log_likelihood_se")},
        "train_seconds_full": full["seconds"], "train_seconds_early": early["seconds"],
        "stopped_early": bool(stop),
    }
    out["time_ratio"] = out["train_seconds_early"] / out["train_seconds_full"]
    (folder / "early_stopping.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    k = args.k
    where = (f"stopped after epoch {out['stopped_after_epoch']} of {args.epochs}" if stop
             else f"did not stop: ran all {args.epochs} epochs")
    print(f"early stopping (patience {args.patience}, min_delta {args.min_delta:g}): {where}; "
          f"best epoch {b}")
    print("held-out ELBO (history, 1 sample): best epoch "
          f"{out['best_epoch_test_elbo_1_sample']:.3f}"
          f" | full run, epoch {args.epochs}: {out['full_last_test_elbo_1_sample']:.3f}"
          f" (its best {out['full_best_test_elbo_1_sample']:.3f} at epoch "
          f"{out['full_best_epoch']})")
    for name, m in (("early run, best weights", out["early_best_weights"]),
                    ("early run, last weights", out["early_last_weights"]),
                    (f"full run, epoch {args.epochs}", out["full_last_weights"])):
        print(f"  {name:28s} ELBO {m['elbo']:8.3f}   IWAE (K={k}) {m['log_likelihood']:8.3f}"
              f" ± {m['log_likelihood_se']:.3f}")
    print(f"training time: {out['train_seconds_early']:.1f} s against "
          f"{out['train_seconds_full']:.1f} s ({out['time_ratio']:.2f}×, "
          f"{100 * (1 - out['time_ratio']):.0f}% saved; epochs "
          f"{out['stopped_after_epoch']}/{args.epochs} = "
          f"{out['stopped_after_epoch'] / args.epochs:.2f})")
    print(f"wrote {folder / 'early_stopping.json'}")


if __name__ == "__main__":
    main()
