"""``pyrovae export RUN``: a run's network weights as ``model.safetensors`` plus its spec.

The exported folder (default ``RUN/export``) is a weights folder
(:mod:`pyrovae.model.weights`): ``pyrovae.load_vae(folder)`` or
``VAE.from_pretrained(folder)`` read it back without pyrovae's checkpoint and
without unpickling anything; its ``spec.yaml`` is the run's whole spec.  It is
written like every run-folder output: under the lock (the run's own, for the
default place), built in a staging folder and swapped in complete; an existing
export is replaced only with ``overwrite`` and only when it holds nothing but an
export.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.model.weights import WEIGHTS_FOLDER_FILES, save_vae
from pyrovae.runs import folder as runs


def _is_export(folder: Path) -> bool:
    """A folder holding only what an export writes (and our temp files of it)."""
    return all(not p.is_symlink() and p.is_file()
               and (pio.temp_file_target(p.name) or p.name) in WEIGHTS_FOLDER_FILES
               for p in folder.iterdir())


def _check_out(out: Path, overwrite: bool) -> None:
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise PyrovaeError(f"output {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not _is_export(out):
        raise PyrovaeError(f"output folder {out} holds files pyrovae did not write; pyrovae "
                           "will not touch it: choose another --out")
    if not overwrite:
        raise PyrovaeError(f"output folder {out} exists; pass --overwrite to replace it")


def export_run(run_dir: str | Path, out: str | Path | None = None, *, which: str = "last",
               overwrite: bool = False) -> Path:
    """Write the ``which`` (``last`` or ``best``) weights of a run and its spec to ``out``.

    Args:
        run_dir: a run folder written by ``pyrovae train``.
        out: the folder to write (default ``RUN/export``, under the run's lock).
        which: ``last`` (the final checkpoint) or ``best`` (the best held-out epoch).
        overwrite: replace a previous export in ``out``.

    Returns:
        The exported folder.

    Raises:
        PyrovaeError: the run does not verify, has no such checkpoint, or ``out`` may
            not be written.
    """
    run_dir = runs.own_path(run_dir)
    default = out is None
    out = run_dir / runs.EXPORT_DIR if default else runs.own_path(out)
    with runs.RunLock(run_dir if default else out, "pyrovae export"):
        if default:
            runs.check_layout(run_dir)
        _check_out(out, overwrite)
        vae, spec, _ = runs.load_run(run_dir, history=False, which=which)
        stage = runs.staging_folder(out)
        try:
            save_vae(vae, stage, spec=spec, overwrite=True)
            if out.is_dir():
                runs.replace_folder_atomically(stage, out)
            else:
                os.rename(stage, out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return out
