"""``pyrovae evaluate RUN``: ELBO and IWAE log-likelihood of a trained run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pyrovae.cli.flags import add_progress_flag
from pyrovae.runs.pipeline import evaluate_run
from pyrovae.runs.spec import MAX_NUM_SAMPLES, check_num_samples

#: Most importance samples per example: the one bound of every subcommand and spec.
MAX_K = MAX_NUM_SAMPLES


def register(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="evaluate a run folder (ELBO, IWAE log-likelihood)",
                       description="Evaluate a trained run on its held-out (or training) split.")
    p.add_argument("run_dir", metavar="RUN", help="run folder written by `pyrovae train`")
    p.add_argument("-k", "--num-samples", type=int, metavar="K",
                   help="importance samples per example (default: the spec's eval.num_samples)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--which", choices=("last", "best"), default="last",
                   help="the final weights (last, default) or the best held-out epoch's (best)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_progress_flag(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.num_samples is not None:
        check_num_samples(args.num_samples, "--num-samples")
    m = evaluate_run(args.run_dir, num_samples=args.num_samples, split=args.split,
                     which=args.which, progress=args.progress)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(f"{m['split']} split, {m['num_examples']} examples, K = {m['num_samples']}, "
              f"{m['which']} weights")
        if not m["finished"]:
            print(f"  UNFINISHED run: {m['epochs_done']} of {m['epochs']} epochs trained "
                  "(continue it with `pyrovae train --resume RUN`)")
        print(f"  ELBO            {m['elbo']:10.3f} nats/example")
        print(f"  reconstruction  {m['reconstruction']:10.3f}")
        print(f"  KL(q ‖ p)       {m['kl']:10.3f}"
              f"{' (closed form)' if m['kl_closed_form'] else ' (Monte Carlo)'}")
        given = m.get("context") is not None  # a conditional run: log p(x | y), y its labels
        name = "log p(x | y) ≥" if given else "log p(x) ≥    "
        why = ", y: the label of each example" if given else ""
        print(f"  {name}  {m['log_likelihood']:10.3f} ± {m['log_likelihood_se']:.3f} "
              f"(IWAE{why})")
    return 0
