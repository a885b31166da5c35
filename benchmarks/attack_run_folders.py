"""Attack counts for run folders: random damage to any byte of any file of a run.

Trains one tiny run, then for N random damages (a flipped bit, a replaced byte, a
truncation or an inserted byte, at a random place of a random file of the run,
the checkpoint weighted like every other file) loads the damaged run as
``pyrovae evaluate`` does (verify, rebuild, evaluate with a fixed seed) and as
``train --resume`` does (its saved-state verification), and counts the outcomes
(the worst of the two commands per case):

* same: exit 0 with exactly the undamaged run's result and resumed state;
* refused: a one-line PyrovaeError (exit 2 on the command line);
* WRONG: exit 0 with a different result or resumed state (a silent wrong answer);
* traceback: any other exception (a traceback on the command line).

It uses only functions that exist before and after issue 19, so the same script
measures an older checkout (``PYTHONPATH=OLD_CHECKOUT python benchmarks/...``).

    python benchmarks/attack_run_folders.py --cases 2000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch


def _digest(h, v) -> None:
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(v, dict):
        h.update(b"M")
        for k in sorted(v, key=repr):
            h.update(repr(k).encode())
            _digest(h, v[k])
    elif isinstance(v, (list, tuple)):
        h.update(f"L{len(v)}".encode())
        for x in v:
            _digest(h, x)
    else:
        h.update(f"{type(v).__name__}:{v!r}".encode())


def _state_hash(state) -> str:
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def outcome(run: Path) -> tuple[tuple[str, object], ...]:
    """Per command (evaluate, resume's verification): ``("ok", result)``,
    ``("refused", None)`` or ``("traceback", exception name)``."""
    from pyrovae.errors import PyrovaeError
    from pyrovae.runs import pipeline

    def evaluate():
        torch.manual_seed(0)
        return pipeline.evaluate_run(run, num_samples=4)

    def resume():
        state, saved = pipeline._saved_state(run)
        return _state_hash(state), saved

    out = []
    for command in (evaluate, resume):
        try:
            out.append(("ok", command()))
        except PyrovaeError:
            out.append(("refused", None))
        except Exception as exc:
            out.append(("traceback", type(exc).__name__))
    return tuple(out)


def classify(got, undamaged) -> str:
    """The worst outcome over the commands: WRONG > traceback > refused > same."""
    kinds = []
    for (kind, value), (_, want) in zip(got, undamaged, strict=True):
        kinds.append(("same" if value == want else "WRONG") if kind == "ok" else kind)
    for k in ("WRONG", "traceback", "refused"):
        if k in kinds:
            return k
    return "same"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", metavar="FILE", help="damage only this file of the run "
                    "(e.g. checkpoint.pt)")
    ap.add_argument("--how", choices=["flip", "byte", "truncate", "insert"],
                    help="only this kind of damage (default: any)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyrovae.runs import pipeline

    work = Path(tempfile.mkdtemp(prefix="attack-"))
    try:
        np.save(work / "bin.npy",
                (np.random.default_rng(0).random((12, 4)) > 0.5).astype(np.float32))
        spec = {"latent_dim": 2, "encoder": {"hidden": [3]}, "likelihood": "bernoulli",
                "train": {"epochs": 1, "batch_size": 6}, "eval": {"num_samples": 2},
                "data": {"name": str(work / "bin.npy"), "test_fraction": 0.25}}
        run = work / "run"
        pipeline.train_run(spec, run, progress=False)
        undamaged = outcome(run)
        assert all(kind == "ok" for kind, _ in undamaged), undamaged
        names = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
        if args.only:
            names = [n for n in names if n == args.only]
        originals = {n: (run / n).read_bytes() for n in names}
        rng = random.Random(args.seed)
        counts: Counter = Counter()
        wrong_files: Counter = Counter()
        for _ in range(args.cases):
            name = rng.choice(names)
            raw = bytearray(originals[name])
            i = rng.randrange(len(raw))
            how = args.how or rng.choice(["flip", "byte", "truncate", "insert"])
            if how == "flip":
                raw[i] ^= 1 << rng.randrange(8)
            elif how == "byte":
                raw[i] = rng.randrange(256)
            elif how == "truncate":
                raw = raw[:i]
            else:
                raw[i:i] = bytes([rng.randrange(256)])
            (run / name).write_bytes(bytes(raw))
            kind = classify(outcome(run), undamaged)
            (run / name).write_bytes(originals[name])
            if kind in ("WRONG", "traceback"):
                wrong_files[f"{kind} {name}"] += 1
            counts[kind] += 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"cases {args.cases} (seed {args.seed}, files {args.only or 'all'}, damage "
              f"{args.how or 'any'}, load {load:.1f}): "
              + ", ".join(f"{k} {counts[k]}" for k in ("same", "refused", "WRONG", "traceback")))
        for k, n in sorted(wrong_files.items()):
            print(f"  {k}: {n}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
