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
from pyrovae.plots.captions import captions_for
from pyrovae.registry import check_seed
from pyrovae.runs import folder as runs
from pyrovae.runs.sections import CheckBudget

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


def context_of(vae: Any, text: str | None) -> Any:
    """The one context ``--y TEXT`` names for ``vae``, as one row (a label: shape (1,);
    a vector of ``dim`` numbers, comma- or space-separated: shape (1, dim)); ``None``
    for ``text=None``.

    Raises:
        PyrovaeError: ``--y`` on an unconditional model, a label that is not an
            integer in 0..classes−1, or a vector of the wrong length or not finite.
    """
    import math

    import torch

    if text is None:
        return None
    family, dim = vae.context.family, int(vae.context.dim)
    shown = text if len(text) <= 40 else text[:37] + "..."
    if not dim:
        raise PyrovaeError(f"--y: this run's model is unconditional (context "
                           f"{family or 'none'!r}); drop --y")
    parts = text.replace(",", " ").split()
    if family == "label":
        classes = int(vae.context.classes)
        try:
            k = int(parts[0]) if len(parts) == 1 else None
        except ValueError:
            k = None
        if k is None:
            raise PyrovaeError(f"--y: expected a class label, an integer in 0..{classes - 1}, "
                               f"got {shown!r}")
        if not 0 <= k < classes:
            raise PyrovaeError(f"--y: expected a class label in 0..{classes - 1}, got {k}")
        return torch.tensor([k])
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != dim or not all(math.isfinite(v) for v in values):
        raise PyrovaeError(f"--y: expected {dim} finite number{'s' if dim > 1 else ''} (the "
                           f"{family!r} context, comma-separated), got {shown!r}")
    return torch.tensor([values], dtype=torch.float32)


def describe_context(vae: Any, y: Any) -> str:
    """``"y = 3"`` or ``"y = (0.5, 1)"`` for the one-row context ``y``."""
    values = [f"{float(v):g}" for v in y.reshape(-1).tolist()]
    if vae.context.family == "label":
        return f"y = {int(y.reshape(-1)[0])}"
    return "y = " + (values[0] if len(values) == 1 else f"({', '.join(values)})")


def check_toy_into(name: str, out: str | Path, *, overwrite: bool, num_points: int, seed: int,
                   quick: bool, progress: bool | None = False) -> dict[str, Any]:
    """``pyrovae check TOY --out DIR``: the toy's checks, written to ``out``;
    ``progress``: ``False`` silent, ``None`` a line per long stage (its progress on a
    terminal), ``True`` its progress off a terminal too."""
    from pyrovae.runs.check import check_toy

    with output_folder(out, overwrite=overwrite, command="pyrovae check") as stage:
        report = check_toy(name, num_points=num_points, seed=seed, folder=stage, quick=quick,
                           progress=progress is not False, force_progress=bool(progress))
        return write_report(report, stage, Path(out))


def check_run_into(run_dir: str | Path, out: str | Path | None,
                   budget: CheckBudget | None = None, *, overwrite: bool = False,
                   progress: bool | None = None, y: str | None = None,
                   ) -> tuple[dict[str, Any], Path]:
    """``pyrovae check RUN [--out DIR]``: the checks of a trained run on held-out points
    of its data (verified against the run's fingerprint), written to ``out``
    (default ``RUN/check``, under the run's own lock).  Returns ``(report, out)``.
    ``progress``: ``None`` a line per stage on stderr (each stage's progress on a
    terminal), ``True`` the stages' progress off a terminal too, ``False`` silent.

    A conditional run is checked for one context: ``y`` (the text of ``--y``: a class
    label, or the numbers of a context vector), by default the first held-out point's;
    for a label context the points checked are held-out points of that class.  Every
    log p(x) of the report is then log p(x | y).  ``budget``: what the checks spend
    (:class:`~pyrovae.runs.sections.CheckBudget`; None: its defaults), passed on to
    :func:`pyrovae.runs.check.check_vae`."""
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
        b = budget if budget is not None else CheckBudget()
        xs, cx = data.x, data.x[:b.collapse_points]
        context = _check_context(vae, y, data)
        if context is not None and vae.context.family == "label" and data.y is not None:
            same = torch.as_tensor(data.y) == int(context[0])
            if not bool(same.any()):
                raise PyrovaeError(f"--y {int(context[0])}: no point of the "
                                   f"{'test' if test is not None else 'train'} split has "
                                   "this label")
            xs = data.x[same]
            cx = xs[:b.collapse_points]
        x = xs[:b.points].to(dtype)
        report, grids = check_vae(
            vae, x, num_samples=b.samples, amortization_steps=100 if b.quick else 500,
            nuts_points=0 if b.quick else min(3, len(x)), seed=b.seed,
            ais_steps=min(b.ais_steps, 50) if b.quick else b.ais_steps,
            ais_chains=b.ais_chains, bdmc_points=b.bdmc_points,
            sbc_sims=min(b.sbc_sims, 50) if b.quick and b.sbc_sims else b.sbc_sims,
            collapse_x=cx.to(dtype), progress=progress is not False,
            force_progress=bool(progress), y=context,
            certified=b.certified, target_width=b.target_width,
            max_ais_steps=b.max_ais_steps, ais_time_limit=b.ais_time_limit,
        )
        report = {"run": str(run_dir), "data": spec["data"],
                  "split": "test" if test else "train", **report}
        if context is not None:
            named = describe_context(vae, context)
            report["context"] = {
                "family": vae.context.family, "y": context.reshape(-1).tolist(),
                "chosen": "from --y" if y is not None else "of the first held-out point "
                          "(pass --y to choose)",
                "quantity": f"log p(x | {named})",
            }
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
        report["captions"] = captions_for(figures)
        written = write_report(report, stage, out)
        if default and spec["track"]:  # the run's dashboards get the check's numbers too
            from pyrovae.training.tracking import log_report

            epochs = (runs.read_history(run_dir).last or {}).get("epoch", 0)
            log_report(spec["track"], run_dir, run_dir.name, written, int(epochs or 0))
        return written, out


def _check_context(vae: Any, text: str | None, data: Any) -> Any:
    """The one context a run's check uses: ``--y``'s, else the first point's (None for
    an unconditional model or one whose label is a latent)."""
    import torch

    if getattr(vae, "label_latent", False):
        if text is not None:
            raise PyrovaeError("--y: this run's label is a latent (model m2); its check "
                               "sums the label out; drop --y")
        return None
    if text is not None:
        return context_of(vae, text)
    if not vae.context.dim:
        return None
    if data.y is None:
        raise PyrovaeError(f"this run is conditional (context {vae.context.family!r}) but "
                           "its data have no labels; pass --y")
    first = torch.as_tensor(data.y[:1])
    if vae.context.family == "label":
        return first.long()
    return first.reshape(1, -1).float()


#: Most samples one call draws (a grid of more is unreadable; an array that big, slow).
MAX_SAMPLES = 100_000


def sample_run(run_dir: str | Path, out: str | Path | None, *, num: int, draw: bool,
               seed: int, overwrite: bool, y: str | None = None) -> tuple[Path, int]:
    """``pyrovae sample RUN``: draw ``num`` samples from the run's generative model and
    write them to ``out`` (``.npy`` array or ``.png`` grid; default ``RUN/samples.png``),
    atomically, under the run's lock (or, for a file elsewhere, a lock beside that
    file).  Returns the path written and the number of samples drawn.

    A conditional run draws from p(x | y) for the context ``y`` (the text of ``--y``:
    a class label, or the numbers of a context vector, see :func:`context_of`); a
    run with a label context and no ``y`` draws ⌈num / classes⌉ samples of every
    class, one row per class (a ``.png`` only).

    Raises:
        PyrovaeError: bad arguments (``y`` out of range, of the wrong length, given
            to an unconditional run, or missing for a vector context), a run that
            does not verify, samples that are not finite, or an existing ``out``
            without ``overwrite``.
    """
    import numpy as np
    import torch

    if not 1 <= num <= MAX_SAMPLES:
        raise PyrovaeError(f"--num: expected an integer in [1, {MAX_SAMPLES}], got {num}")
    check_seed(seed, "--seed")
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
        context = context_of(vae, y)
        per_class = None
        if context is None and vae.context.dim:
            if vae.context.family != "label":
                raise PyrovaeError(f"--y: this run is conditional (context "
                                   f"{vae.context.family!r}, {vae.context.dim} number(s)); "
                                   "pass --y with the context to sample from")
            if out.suffix.lower() == ".npy":
                raise PyrovaeError("--y: this run is conditional (context 'label'); pass --y "
                                   "for a .npy file (the per-class grid is a .png)")
            classes = int(vae.context.classes)
            per_class = -(-num // classes)
            if per_class * classes > MAX_SAMPLES:
                raise PyrovaeError(f"--num: {per_class} samples for each of {classes} "
                                   f"classes exceed {MAX_SAMPLES}")
            context = torch.arange(classes).repeat_interleave(per_class)
        torch.manual_seed(seed)
        try:
            with torch.no_grad():
                if context is None:
                    x = vae.sample(num, mean=not draw)
                else:
                    n = len(context) if per_class else num
                    rows = context if per_class else context[0]
                    x = vae.sample(n, y=rows.to(vae.param_device()), mean=not draw)
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
            return out, len(x)
        from pyrovae.plots import save_figure
        from pyrovae.plots.training import class_samples, samples
        from pyrovae.runs.pipeline import load_run_data

        _, train, _ = load_run_data(run_dir, spec)
        if train.image_shape is None:
            raise PyrovaeError("this run's data are not images; use --out FILE.npy")
        if per_class:
            fig = class_samples(x, train.image_shape, int(vae.context.classes))
        elif context is not None:
            fig = samples(x, train.image_shape, title=f"samples from p(x | "
                          f"{describe_context(vae, context)}), E[x|z, y], z ~ p(z)")
        else:
            fig = samples(x, train.image_shape)
        save_figure(fig, out)
        return out, len(x)
