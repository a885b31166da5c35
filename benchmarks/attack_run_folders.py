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
    python benchmarks/attack_run_folders.py --cases 2000 --only checkpoint.pt --how flip
    python benchmarks/attack_run_folders.py --targeted   # the trials' deliberate edits
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


def _resave(path: Path, edit) -> None:
    """Change a checkpoint's content, keeping the checksum it was written with."""
    import io

    state = torch.load(path, weights_only=True)
    edit(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    path.write_bytes(buf.getvalue())


def _replace(name: str, old: str, new: str):
    def edit(run: Path) -> None:
        text = (run / name).read_text()
        assert old in text, (name, old)
        (run / name).write_text(text.replace(old, new, 1))
    return edit


def _group(key: str, value):
    def edit(state) -> None:
        state["optimizer"]["param_groups"][0][key] = value
    return edit


EDITS = {
    "spec.yaml relu -> tanh": _replace("spec.yaml", "activation: relu", "activation: tanh"),
    "spec.yaml prior normal -> laplace": _replace("spec.yaml", "family: normal",
                                                  "family: laplace"),
    "spec.yaml eval.num_samples 2 -> 3": _replace("spec.yaml", "num_samples: 2",
                                                  "num_samples: 3"),
    "spec.yaml train.lr": _replace("spec.yaml", "lr: 0.001", "lr: 0.002"),
    "checkpoint lr 1.5e-8": lambda run: _resave(run / "checkpoint.pt", _group("lr", 1.5e-8)),
    "checkpoint amsgrad": lambda run: _resave(run / "checkpoint.pt", _group("amsgrad", True)),
    "checkpoint betas": lambda run: _resave(run / "checkpoint.pt", _group("betas", (0.5, 0.9))),
    "checkpoint epoch": lambda run: _resave(run / "checkpoint.pt",
                                            lambda s: s.__setitem__("epoch", 0)),
    "checkpoint data fingerprint": lambda run: _resave(
        run / "checkpoint.pt", lambda s: s.__setitem__("data_fingerprint", "0" * 64)),
    "checkpoint spec hash": lambda run: _resave(
        run / "checkpoint.pt", lambda s: s.__setitem__("spec_hash", "0" * 64)),
    "checkpoint spec key hash": lambda run: _resave(
        run / "checkpoint.pt", lambda s: s["spec_sections"].__setitem__("encoder", "0" * 64)),
    "checkpoint history": lambda run: _resave(
        run / "checkpoint.pt", lambda s: s.__setitem__("history", {"records": []})),
    "manifest version 2": _replace("pyrovae-run.json", '"version": 1', '"version": 2'),
    "manifest fingerprint": lambda run: (run / "pyrovae-run.json").write_text(
        (run / "pyrovae-run.json").read_text().replace('"fingerprint": "',
                                                       '"fingerprint": "0', 1)),
}


def targeted(run: Path, other: Path, undamaged) -> None:
    """One case per deliberate edit, then another run's checkpoint dropped in."""
    originals = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    counts: Counter = Counter()
    cases = {**EDITS, "another run's checkpoint (seed 7)": lambda r: shutil.copy(
        other / "checkpoint.pt", r / "checkpoint.pt")}
    for label, edit in cases.items():
        edit(run)
        kind = classify(outcome(run), undamaged)
        for p, raw in originals.items():
            p.write_bytes(raw)
        counts[kind] += 1
        print(f"  {label}: {kind}")
    print(f"targeted cases {len(cases)}: "
          + ", ".join(f"{k} {counts[k]}" for k in ("same", "refused", "WRONG", "traceback")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", metavar="FILE", help="damage only this file of the run "
                    "(e.g. checkpoint.pt)")
    ap.add_argument("--how", choices=["flip", "byte", "truncate", "insert"],
                    help="only this kind of damage (default: any)")
    ap.add_argument("--targeted", action="store_true",
                    help="instead: the deliberate edits of issue 19's trials, one case each")
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
        if args.targeted:
            pipeline.train_run({**spec, "train": {**spec["train"], "seed": 7}}, work / "other",
                               progress=False)
            targeted(run, work / "other", undamaged)
            return
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
