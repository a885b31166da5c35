"""What ``pyrovae check`` and ``pyrovae sample`` write: run-folder writers like ``train``.

Both go through the same path as a training run (:mod:`pyrovae.runs.folder`):
the folder is locked (:class:`~pyrovae.runs.folder.RunLock`; a check of a run
into its own ``RUN/check`` locks the run itself, so it excludes a ``train
--resume`` of it and a second check), the new output is built in a staging
folder beside it and swapped into place only once complete, and an existing
output folder is replaced only with ``overwrite`` and only when it holds nothing
but what a check writes (``report.json`` and the figures it lists): a folder
holding anything else is refused, and left as it is.  The CLI modules only
parse arguments and print what these return.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.runs import folder as runs

REPORT = runs.REPORT_FILE


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` a check may not replace (call under the lock)."""
    kind = runs.output_kind(out)
    if kind == "foreign":
        if not out.is_dir() or out.is_symlink():
            raise PyrovaeError(f"output {out} exists and is not a folder")
        extra = runs.foreign_output_entries(out)
        raise PyrovaeError(f"output folder {out} holds files pyrovae did not write "
                           f"({', '.join(extra[:3])[:120]}); pyrovae will not touch it: "
                           "choose another --out")
    if kind == "output" and not overwrite:
        raise PyrovaeError(f"output folder {out} exists; pass --overwrite to replace it")


@contextlib.contextmanager
def output_folder(out: str | Path, *, overwrite: bool, command: str,
                  lock: str | Path | None = None) -> Iterator[Path]:
    """Lock, check ``out`` and yield a staging folder to write the output in; when
    the block ends without an error the staging folder replaces ``out`` in one swap,
    else it is removed and ``out`` is as it was.

    Args:
        out: the output folder (absent, empty, or a previous output of a check).
        overwrite: replace a previous output.
        command: the holder named in the lock file (e.g. ``"pyrovae check"``).
        lock: the folder to lock, when it is not ``out`` (a run whose ``check``
            folder is written).

    Raises:
        PyrovaeError: ``out`` is locked, is not a folder, holds files pyrovae did
            not write, or exists without ``overwrite``.
    """
    out = runs.replaceable_path(out)
    with runs.RunLock(lock if lock is not None else out, command):
        _check_output(out, overwrite)
        runs.clean_leftovers(out, runs.is_output_of_ours)
        stage = runs.staging_folder(out)
        try:
            yield stage
            if out.is_dir():
                runs.replace_folder_atomically(stage, out)
            else:
                os.rename(stage, out)
        except BaseException as exc:
            shutil.rmtree(stage, ignore_errors=True)
            if isinstance(exc, OSError) and exc.filename and str(stage) in str(exc.filename):
                raise type(exc)(exc.errno, exc.strerror or str(exc),
                                str(exc.filename).replace(str(stage), str(out))) from None
            raise


def write_report(report: dict[str, Any], stage: Path, out: Path) -> dict[str, Any]:
    """Write ``report.json`` in the staging folder, its figure paths pointing into
    ``out`` (where the swap puts them); returns the report as written."""
    from pyrovae.runs.check import jsonable

    figs = report.get("figures")
    if isinstance(figs, dict):
        report["figures"] = {k: None if v is None else str(runs.own_path(out) / Path(v).name)
                             for k, v in figs.items()}
    pio.atomic_write_text(stage / REPORT, json.dumps(jsonable(report), indent=1) + "\n")
    return report


def check_toy_into(name: str, out: str | Path, *, overwrite: bool, num_points: int, seed: int,
                   quick: bool) -> dict[str, Any]:
    """``pyrovae check TOY --out DIR``: the toy's checks, written to ``out``."""
    from pyrovae.runs.check import check_toy

    with output_folder(out, overwrite=overwrite, command="pyrovae check") as stage:
        report = check_toy(name, num_points=num_points, seed=seed, folder=stage, quick=quick)
        return write_report(report, stage, Path(out))


def check_run_into(run_dir: str | Path, out: str | Path | None, *, overwrite: bool,
                   points: int, samples: int, seed: int, quick: bool, ais_steps: int,
                   ais_chains: int, bdmc_points: int, sbc_sims: int,
                   collapse_points: int, certified: bool = False, target_width: float = 0.2,
                   max_ais_steps: int = 6400, ais_time_limit: float | None = None,
                   ) -> tuple[dict[str, Any], Path]:
    """``pyrovae check RUN [--out DIR]``: the checks of a trained run on held-out points
    of its data (verified against the run's fingerprint), written to ``out``
    (default ``RUN/check``, under the run's own lock).  ``certified`` and the three
    budget arguments after it are those of :func:`pyrovae.runs.check.check_vae`.
    Returns ``(report, out)``."""
    import torch

    from pyrovae.plots import posterior as P
    from pyrovae.runs.check import _save, check_vae, diagnostic_figures
    from pyrovae.runs.pipeline import load_run_data

    run_dir = runs.check_run_folder(runs.own_path(run_dir))
    if runs.read_manifest(run_dir) is None:  # before anything is created in or beside it
        raise PyrovaeError(f"{run_dir} is not a pyrovae run folder (no {runs.MANIFEST_FILE})")
    default = out is None
    out = run_dir / runs.CHECK_DIR if default else runs.replaceable_path(out)
    with output_folder(out, overwrite=overwrite, command="pyrovae check",
                       lock=run_dir if default else None) as stage:
        if default:
            runs.check_layout(run_dir)
        vae, spec, _ = runs.load_run(run_dir, history=False)
        _, train, test = load_run_data(run_dir, spec)
        data = test if test is not None else train
        dtype = next(vae.parameters()).dtype
        x = data.x[:points].to(dtype)
        report, grids = check_vae(
            vae, x, num_samples=samples, amortization_steps=100 if quick else 500,
            nuts_points=0 if quick else min(3, len(x)), seed=seed,
            ais_steps=min(ais_steps, 50) if quick else ais_steps, ais_chains=ais_chains,
            bdmc_points=bdmc_points,
            sbc_sims=min(sbc_sims, 50) if quick and sbc_sims else sbc_sims,
            collapse_x=data.x[:collapse_points].to(dtype), progress=True,
            certified=certified, target_width=target_width, max_ais_steps=max_ais_steps,
            ais_time_limit=ais_time_limit,
        )
        report = {"run": str(run_dir), "data": spec["data"],
                  "split": "test" if test else "train", **report}
        figures: dict[str, str | None] = {}
        if grids is not None and vae.latent_dim == 2:
            titles = [f"gap {float(g):.2f}, $\\hat{{k}}$ {float(k):.2f}"
                      for g, k in zip(report["gap"], report["khat"], strict=True)]
            images = None
            if data.image_shape is not None:
                images = [xi.reshape(data.image_shape).numpy() for xi in x.float()]
            fig = P.posterior_grid_figure(grids, images=images, titles=titles)
            figures["posterior"] = _save(fig, stage, "posterior.png")
        figures["khat"] = _save(P.khat_figure(torch.as_tensor(report["khat"])), stage, "khat.png")
        if "amortization" in report:
            figures["gaps"] = _save(P.gaps_figure({vae.spec["guide"]["family"]:
                                                   report["amortization"]}), stage, "gaps.png")
        figures.update(diagnostic_figures(report, stage))
        report["figures"] = figures
        written = write_report(report, stage, out)
        if default and spec["track"]:  # the run's dashboards get the check's numbers too
            from pyrovae.training.tracking import log_report

            epochs = (runs.read_history(run_dir).last or {}).get("epoch", 0)
            log_report(spec["track"], run_dir, run_dir.name, written, int(epochs or 0))
        return written, out


#: Most samples one call draws (a grid of more is unreadable; an array that big, slow).
MAX_SAMPLES = 100_000


def sample_run(run_dir: str | Path, out: str | Path | None, *, num: int, draw: bool,
               seed: int, overwrite: bool) -> Path:
    """``pyrovae sample RUN``: draw ``num`` samples from the run's generative model and
    write them to ``out`` (``.npy`` array or ``.png`` grid; default ``RUN/samples.png``),
    atomically, under the run's lock (or, for a file elsewhere, a lock beside that
    file).  Returns the path written.

    Raises:
        PyrovaeError: bad arguments, a run that does not verify, samples that are
            not finite, or an existing ``out`` without ``overwrite``.
    """
    import numpy as np
    import torch

    if not 1 <= num <= MAX_SAMPLES:
        raise PyrovaeError(f"--num: expected an integer in [1, {MAX_SAMPLES}], got {num}")
    if not 0 <= seed < 2**63:
        raise PyrovaeError(f"--seed: expected a non-negative integer below 2**63, got {seed}")
    run_dir = runs.own_path(run_dir)
    default = out is None
    out = run_dir / "samples.png" if default else Path(os.path.abspath(out))
    if out.suffix.lower() not in (".png", ".npy"):
        raise PyrovaeError(f"--out {out}: expected a .png or .npy file name")
    with runs.RunLock(run_dir if default else out, "pyrovae sample"):
        if out.is_symlink() or out.is_dir() or (out.exists() and not out.is_file()):
            raise PyrovaeError(f"{out} exists and is not a regular file; pyrovae will not "
                               "replace it")
        if out.exists() and not overwrite:
            raise PyrovaeError(f"{out} exists; pass --overwrite to replace it")
        vae, spec, _ = runs.load_run(run_dir, history=False)
        torch.manual_seed(seed)
        try:
            with torch.no_grad():
                x = vae.sample(num, mean=not draw)
            finite = bool(torch.isfinite(x).all())
        except (ValueError, RuntimeError, OverflowError):  # e.g. inf logits refused by torch
            finite = False
        if not finite:
            raise PyrovaeError(f"{run_dir}: the model's samples hold non-finite values (its "
                               "parameters are finite but too large); nothing written")
        if out.suffix.lower() == ".npy":
            import io

            buf = io.BytesIO()
            np.save(buf, x.cpu().numpy())
            pio.atomic_write_bytes(out, buf.getvalue())
            return out
        from pyrovae.plots import save_figure
        from pyrovae.plots.training import samples
        from pyrovae.runs.pipeline import load_run_data

        _, train, _ = load_run_data(run_dir, spec)
        if train.image_shape is None:
            raise PyrovaeError("this run's data are not images; use --out FILE.npy")
        save_figure(samples(x, train.image_shape), out)
        return out
