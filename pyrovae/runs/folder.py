"""Run folders: the spec, a checkpoint, metrics and figures, written atomically, never lost.

Layout of a run folder::

    RUN/pyrovae-run.json the manifest: our marker (format, version), status, data identity
    RUN/spec.yaml        the full spec (rebuilds the model: VAE.from_spec)
    RUN/checkpoint.pt    parameters, optimiser and RNG states, epoch, step, tensor checksum
    RUN/history.json     per-epoch records (strict JSON)
    RUN/metrics.json     final evaluation (ELBO, IWAE log-likelihood, ...)
    RUN/figures/*.png

A folder is a pyrovae run only if it holds our manifest (``format:
pyrovae-run``); a folder with some other ``spec.yaml`` is never touched.

Every writer (train, resume, overwrite, check) holds a :class:`RunLock` on the
folder: a lock file beside it, ``.RUN.pyrovae-lock``, locked with ``flock``
and naming its holder (pid, host, start time).  The OS drops the lock when the
holder dies, even by SIGKILL, so a stale lock file never blocks anyone.

An overwrite builds the new run in a sibling folder (``.RUN.pyrovae-new-XXXX``)
and swaps it into place only when it has finished
(:func:`replace_folder_atomically`); a new run that fails or is killed leaves
the old one intact.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.io import load_checkpoint

SPEC_FILE = "spec.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "pyrovae-run.json"
FIGURES_DIR = "figures"
CHECK_DIR = "check"

#: The manifest's marker and the layout version it describes.
FORMAT = "pyrovae-run"
FORMAT_VERSION = 1

#: Files and folders pyrovae writes in a run folder (train, sample, check).
OWN_FILES = frozenset({MANIFEST_FILE, SPEC_FILE, CHECKPOINT_FILE, HISTORY_FILE, METRICS_FILE,
                       "samples.png", "samples.npy"})
OWN_DIRS = frozenset({FIGURES_DIR, CHECK_DIR})
_OWN_SUFFIXES = (".png", ".json", ".npy")


# ------------------------------------------------------------------ the lock
def _lock_path(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    return folder.with_name(f".{folder.name}.pyrovae-lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class RunLock:
    """Exclusive lock on a run (or output) folder, for every writer.

    ``with RunLock(folder, "train"):`` ... raises a :class:`PyrovaeError` naming
    the holder (command, pid, host, start time) when another process holds it.
    The lock is ``flock`` on ``.NAME.pyrovae-lock`` beside the folder: released
    by the OS when its holder dies (a SIGKILLed holder leaves no stale lock).
    Where ``flock`` is not supported, a lock file whose pid is dead on this host
    is stale and taken over.  Works on the folder before it exists.
    """

    def __init__(self, folder: str | Path, command: str = "pyrovae") -> None:
        self.folder = Path(folder)
        self.command = command
        self.path = _lock_path(self.folder)
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        """The holder the lock file names (None if there is none or it is unreadable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8")[:4096])
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _refuse(self) -> PyrovaeError:
        h = self.holder() or {}
        started = h.get("started")
        when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
                if isinstance(started, (int, float)) else "an unknown time")
        def plain(key: str, default: str) -> str:
            return str(h.get(key, default))[:60]

        return PyrovaeError(
            f"{self.folder} is locked by {plain('command', 'another pyrovae process')} "
            f"(pid {plain('pid', '?')} on host {plain('host', '?')}, since {when}); "
            "wait for it to finish, or choose another folder"
        )

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not self._lock(fd):
                    raise self._refuse()
                try:  # the file may have been unlinked by a releasing holder: retry
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                info = {"command": self.command, "pid": os.getpid(),
                        "host": socket.gethostname(), "started": time.time()}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
                self._fd = fd
                return self
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        raise PyrovaeError(f"{self.folder}: could not take the lock (it keeps changing)")

    def _lock(self, fd: int) -> bool:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:  # no flock here (some network file systems): use the pid
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            h = self.holder()
            if not h or h.get("pid") == os.getpid():
                return True
            pid = h.get("pid")
            return (h.get("host") == socket.gethostname() and isinstance(pid, int)
                    and not _alive(pid))

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------ swapping
def staging_folder(target: str | Path) -> Path:
    """A new empty sibling folder ``.NAME.pyrovae-new-XXXX`` to build a replacement in."""
    target = Path(os.path.abspath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.pyrovae-new-", dir=target.parent))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False if the
    system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_folder_atomically(new: str | Path, target: str | Path) -> None:
    """Put folder ``new`` in the place of ``target`` (which must exist), then delete
    the old content.  One atomic exchange where the system has one (Linux); else two
    renames, the old folder parked at ``.NAME.pyrovae-old-PID`` in between (restored
    by :func:`clean_leftovers` should the process die there)."""
    new, target = Path(os.path.abspath(new)), Path(os.path.abspath(target))
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # now the old content
        return
    old = target.with_name(f".{target.name}.pyrovae-old-{os.getpid()}")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(target: str | Path) -> None:
    """Under the lock: restore a parked old folder whose swap was cut short, and delete
    staging folders of killed replacements, and our temp files in ``target``."""
    target = Path(os.path.abspath(target))
    if not target.parent.is_dir():
        return
    for p in target.parent.glob(f".{target.name}.pyrovae-old-*"):
        if not target.exists():
            os.rename(p, target)
        else:
            shutil.rmtree(p, ignore_errors=True)
    for p in target.parent.glob(f".{target.name}.pyrovae-new-*"):
        shutil.rmtree(p, ignore_errors=True)
    for sub in (target, target / FIGURES_DIR, target / CHECK_DIR):
        pio.remove_temp_files(sub)


# ------------------------------------------------------------------ what a folder is
def write_manifest(folder: str | Path, status: str, data: dict[str, Any] | None = None) -> None:
    """Write our marker: ``{"format": "pyrovae-run", "version": 1, "status": ..., "data": ...}``."""
    pio.atomic_write_json(Path(folder) / MANIFEST_FILE, {
        "format": FORMAT, "version": FORMAT_VERSION, "status": status, "data": data or {}})


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a run folder; None if the folder has none (not a pyrovae run)."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    m = pio.read_json(path, str(path), max_bytes=1 << 20)
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise PyrovaeError(f"{path}: not a pyrovae run manifest")
    if m.get("version") != FORMAT_VERSION:
        raise PyrovaeError(f"{path}: run format version {pio.short(m.get('version'))}; this "
                           f"pyrovae reads version {FORMAT_VERSION}")
    return m


def _is_our_temp(name: str) -> bool:
    return pio.is_temp_file(name) and any(name.startswith(f".{own}.") for own in OWN_FILES)


def foreign_entries(folder: str | Path) -> list[str]:
    """Names in ``folder`` that pyrovae did not write (sorted); only these block deletion."""
    folder = Path(folder)
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            out.append(p.name)
        elif p.is_file() and (p.name in OWN_FILES or _is_our_temp(p.name)):
            continue
        elif p.is_dir() and p.name in OWN_DIRS:
            out.extend(f"{p.name}/{q.name}" for q in sorted(p.iterdir())
                       if q.is_symlink() or not q.is_file()
                       or not (q.suffix in _OWN_SUFFIXES or pio.is_temp_file(q.name)))
        else:
            out.append(p.name)
    return out


def folder_kind(folder: str | Path) -> str:
    """``absent``, ``empty``, ``unfinished`` (ours, killed before its first checkpoint:
    only our temp files, manifest and spec), ``run`` (our manifest and more) or
    ``foreign`` (anything else, e.g. a folder with somebody's ``spec.yaml``)."""
    folder = Path(folder)
    if not folder.exists():
        return "absent"
    if not folder.is_dir():
        return "foreign"
    names = [p.name for p in folder.iterdir()]
    if not names:
        return "empty"
    if foreign_entries(folder):
        return "foreign"
    if all(_is_our_temp(n) for n in names):
        return "unfinished"
    try:
        manifest = read_manifest(folder)
    except PyrovaeError:
        return "foreign"
    if manifest is None:
        return "foreign"
    started = all(_is_our_temp(n) or n in (MANIFEST_FILE, SPEC_FILE) for n in names)
    return "unfinished" if started else "run"


def prepare_run_folder(path: str | Path, *, overwrite: bool = False) -> tuple[Path, bool]:
    """Check that ``path`` may receive a new run (call it under the :class:`RunLock`).

    Returns ``(path, replace)``: ``replace`` is True when an existing run is to be
    replaced (only with ``overwrite``; build the new one in :func:`staging_folder`
    and swap it in at the end).  An empty folder or an unfinished start of ours is
    reused; a folder that is not our run, or holds files we did not write, is never
    replaced.
    """
    path = Path(path)
    clean_leftovers(path)
    kind = folder_kind(path)
    if kind == "foreign":
        if path.exists() and not path.is_dir():
            raise PyrovaeError(f"run folder {path} exists and is not a folder")
        extra = foreign_entries(path)
        why = (f"it holds files pyrovae did not write ({', '.join(extra[:3])[:120]})"
               if extra else f"it is not a pyrovae run (no valid {MANIFEST_FILE})")
        raise PyrovaeError(f"run folder {path} exists and {why}; pyrovae will not "
                           "replace it: choose another --out")
    if kind == "run" and not overwrite:
        raise PyrovaeError(f"run folder {path} exists; pass --overwrite to replace it "
                           "(or --resume to continue it)")
    if kind == "unfinished":
        for name in OWN_FILES:
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path, kind == "run"


def check_run_folder(path: str | Path) -> Path:
    """The folder of an existing run, or a PyrovaeError naming what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise PyrovaeError(f"run folder not found: {path}")
    if not (path / CHECKPOINT_FILE).is_file() and folder_kind(path) == "unfinished":
        raise PyrovaeError(f"{path} is an unfinished start (stopped before its first "
                           "checkpoint); start it again with `pyrovae train --out` or --resume")
    for name in (SPEC_FILE, CHECKPOINT_FILE):
        if not (path / name).is_file():
            raise PyrovaeError(f"{path} is not a pyrovae run folder (no {name})")
    return path


def read_spec(path: str | Path) -> dict[str, Any]:
    """The normalized spec in a ``spec.yaml`` (parsed within :mod:`pyrovae.io`'s limits)."""
    from pyrovae.runs.spec import normalize_spec

    path = Path(path)
    what = f"{path}: spec"
    raw = pio.parse_text(pio.read_text(path, what), "yaml", what)
    try:
        return normalize_spec(raw)
    except PyrovaeError as exc:
        raise PyrovaeError(f"{path}: {exc}") from None


def read_history(folder: str | Path) -> Any:
    """The run's :class:`~pyrovae.training.trainer.History` (empty if none was written)."""
    from pyrovae.training.trainer import History

    path = Path(folder) / HISTORY_FILE
    if not path.is_file():
        return History()
    d = pio.read_json(path, str(path))
    try:
        return History.from_dict(d)
    except (ValueError, TypeError, AttributeError):
        raise PyrovaeError(f"{path}: unreadable history") from None


def load_run(path: str | Path) -> tuple[Any, dict[str, Any], Any]:
    """``(vae, spec, history)`` of a run folder, the model rebuilt from its spec.

    The checkpoint's checksum and finiteness are verified (:func:`pyrovae.io.load_checkpoint`).
    """
    from pyrovae.model.vae import VAE

    path = check_run_folder(path)
    spec = read_spec(path / SPEC_FILE)
    state = load_checkpoint(path / CHECKPOINT_FILE)
    vae = VAE.from_spec(spec)
    try:
        vae.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise PyrovaeError(
            f"{path}: checkpoint does not match its spec ({str(exc).splitlines()[0][:200]})"
        ) from None
    return vae, spec, read_history(path)
