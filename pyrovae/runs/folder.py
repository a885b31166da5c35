"""Run folders: the spec, a checkpoint, metrics and figures, written atomically, never lost.

Layout of a run folder::

    RUN/pyrovae-run.json the manifest: our marker (format, version), status, data identity
    RUN/spec.yaml        the full spec (rebuilds the model: VAE.from_spec)
    RUN/checkpoint.pt    parameters, optimiser and RNG states, epoch, step, tensor checksum
    RUN/best.pt          the same at the best held-out epoch (train.checkpoint.keep_best)
    RUN/checkpoints/epoch-NNNNNN.pt   periodic checkpoints (train.checkpoint.every, keep)
    RUN/export/          ``pyrovae export``: model.safetensors + spec.yaml
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
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
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
#: In ``figures/``: each figure's file stem to its caption (:mod:`pyrovae.plots.captions`).
FIGURE_CAPTIONS_FILE = "captions.json"
CHECK_DIR = "check"
REPORT_FILE = "report.json"
BEST_FILE = "best.pt"
CHECKPOINTS_DIR = "checkpoints"
EXPORT_DIR = "export"
TENSORBOARD_DIR = "tensorboard"
#: The trackers' logs (``track: [csv, jsonl, tensorboard]``).
TRACK_FILES = ("history.csv", "history.jsonl")

#: The manifest's marker and the layout version it describes.
FORMAT = "pyrovae-run"
FORMAT_VERSION = 1

#: Files and folders pyrovae writes in a run folder (train, sample, check).
OWN_FILES = frozenset({MANIFEST_FILE, SPEC_FILE, CHECKPOINT_FILE, HISTORY_FILE, METRICS_FILE,
                       "samples.png", "samples.npy", BEST_FILE, *TRACK_FILES})
OWN_DIRS = frozenset({FIGURES_DIR, CHECK_DIR, CHECKPOINTS_DIR, EXPORT_DIR, TENSORBOARD_DIR})
_OWN_SUFFIXES = (".png", ".json", ".npy")
#: What pyrovae writes in its folders other than figures and reports (by folder).
_OWN_IN: dict[str, tuple[str, ...]] = {CHECKPOINTS_DIR: (".pt",),
                                       EXPORT_DIR: ("model.safetensors", "spec.yaml")}


def _own_in(folder: str, name: str) -> bool:
    """True when ``name`` (or the file a temp file ``name`` is for) is what pyrovae writes
    in its folder ``folder`` (figures, reports, checkpoints, exported weights,
    TensorBoard's event files)."""
    if folder == TENSORBOARD_DIR:
        return name.startswith("events.out.tfevents.")
    target = pio.temp_file_target(name) or name
    return target.endswith(_OWN_SUFFIXES + _OWN_IN.get(folder, ()))


# ------------------------------------------------------------------ the lock
def own_path(folder: str | Path) -> Path:
    """``folder`` as pyrovae handles it: absolute, a symbolic link resolved to the folder
    it names (so an overwrite through a link replaces the run it points to and leaves
    the link), and refused when it has no name (``/``)."""
    folder = Path(os.path.abspath(folder))
    if folder.is_symlink():
        folder = Path(os.path.realpath(folder))
    if not folder.name:
        raise PyrovaeError(f"{folder}: not a run folder (a folder pyrovae writes needs a name "
                           "of its own inside a parent folder)")
    return folder


def replaceable_path(folder: str | Path) -> Path:
    """:func:`own_path` of a folder a command may create or replace by a swap (``train
    --out``, ``check --out``): never the current folder or one above it, which a swap
    would pull from under the shell (``--out .``)."""
    folder = own_path(folder)
    with contextlib.suppress(OSError):
        here = Path(os.getcwd())
        if here == folder or folder in here.parents:
            raise PyrovaeError(f"{folder}: the current folder (or one above it); name a new "
                               "folder below it for pyrovae to write")
    return folder


def _lock_path(folder: Path) -> Path:
    folder = own_path(folder)
    return folder.with_name(f".{folder.name}.pyrovae-lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


_LOCK_KEYS = frozenset({"command", "pid", "host", "started"})


def _lock_info(fd: int) -> dict[str, Any] | None:
    """The holder a lock file (open as ``fd``) names; None when it is not our JSON."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(info, dict) and "pid" in info and set(info) <= _LOCK_KEYS
    return info if ok else None


class RunLock:
    """Exclusive lock on a run (or output) folder, for every writer.

    ``with RunLock(folder, "train"):`` ... raises a :class:`PyrovaeError` naming
    the holder (command, pid, host, start time) when another process holds it.
    The lock is ``flock`` on ``.NAME.pyrovae-lock`` beside the folder: released
    by the OS when its holder dies (a SIGKILLed holder leaves no stale lock).
    Works on the folder before it exists.

    The lock file cannot be redirected: it is created with ``O_CREAT | O_EXCL |
    O_NOFOLLOW`` (a name that exists is never truncated or written), and an
    existing one is opened without following links and taken over only when it
    is a regular file of this user, with one link, holding a lock record whose
    holder has died.  Anything else of that name (a symbolic link, a hard link,
    somebody's file) is refused, and left as it is.  Where ``flock`` is not
    supported, a lock file whose pid is dead on this host is stale.
    """

    def __init__(self, folder: str | Path, command: str = "pyrovae") -> None:
        self.folder = Path(folder)
        self.command = command
        self.path = _lock_path(self.folder)
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        """The holder the lock file names (None if there is none or it is unreadable)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return _lock_info(fd)
        finally:
            os.close(fd)

    def _refuse(self, h: dict[str, Any] | None) -> PyrovaeError:
        h = h or {}
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

    def _not_ours(self, why: str) -> PyrovaeError:
        return PyrovaeError(f"{self.path} exists and {why}; pyrovae neither writes nor removes "
                            "it: remove it yourself if it is not needed, or choose another folder")

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        for _ in range(50):
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileExistsError:
                self._existing()  # raises, or removed a stale lock file: try again
                continue
            try:
                self._lock(fd, blocking=True)
                info = {"command": self.command, "pid": os.getpid(),
                        "host": socket.gethostname(), "started": time.time()}
                os.pwrite(fd, json.dumps(info).encode(), 0)
                self._fd = fd
                return self
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        raise PyrovaeError(f"{self.folder}: could not take the lock (it keeps changing)")

    def _existing(self) -> None:
        """A lock file exists: refuse (held, or not a lock file of ours) or remove it
        when its holder has died (then the caller creates it afresh)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return  # released meanwhile
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._not_ours("is a symbolic link") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._not_ours("is not a regular file")
            if st.st_nlink != 1:
                raise self._not_ours(f"has {st.st_nlink} hard links")
            if not self._lock(fd, blocking=False):
                raise self._refuse(_lock_info(fd))
            info = _lock_info(fd)
            if info is None and st.st_size == 0 and time.time() - st.st_mtime < 5:
                time.sleep(0.02)  # its creator has not written it yet
                return
            if info is None and st.st_size != 0:
                raise self._not_ours("is not a pyrovae lock file")
            # ours and stale (its holder died, or died before writing it): remove it
            if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
                raise self._not_ours("belongs to another user (its holder has ended)")
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path, follow_symlinks=False).st_ino == st.st_ino:
                    os.unlink(self.path)  # stale: its holder died
        finally:
            os.close(fd)

    def _lock(self, fd: int, *, blocking: bool) -> bool:
        try:
            import fcntl
        except ImportError:  # Windows: the package is declared POSIX-only
            raise PyrovaeError("run folders need a POSIX system (Linux, macOS): this Python "
                               "has no fcntl for the run lock") from None

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            return False
        except OSError as exc:  # no flock here (some network file systems): use the pid
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            h = _lock_info(fd)
            if not h or h.get("pid") == os.getpid():
                return True
            pid = h.get("pid")
            return (h.get("host") == socket.gethostname() and isinstance(pid, int)
                    and not _alive(pid))

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self._fd).st_ino:
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


def _sibling_kind(name: str, target: str) -> str | None:
    """``"new"`` or ``"old"`` when ``name`` is exactly one of our staging
    (``.TARGET.pyrovae-new-XXXXXXXX``) or parked (``.TARGET.pyrovae-old-PID``) names for
    ``target``: string comparison, never a glob of the user's folder name."""
    for kind in ("new", "old"):
        prefix = f".{target}.pyrovae-{kind}-"
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if (pio.is_random_part(rest) if kind == "new" else rest.isdigit()):
                return kind
    return None


def _is_run_of_ours(folder: Path) -> bool:
    return folder_kind(folder) in ("empty", "unfinished", "run")


def _leftovers(target: Path, ours: Callable[[Path], bool]) -> list[tuple[str, Path]]:
    """Our staging and parked siblings of ``target``, each recognised by its exact name
    and by its content (``ours``: a folder that holds only what pyrovae writes)."""
    out = []
    if target.name and target.parent.is_dir():
        for p in target.parent.iterdir():
            kind = _sibling_kind(p.name, target.name)
            if kind and not p.is_symlink() and p.is_dir() and ours(p):
                out.append((kind, p))
    return out


def clean_leftovers(target: str | Path, ours: Callable[[Path], bool] | None = None) -> None:
    """Under the lock, once ``target`` is known to be ours (or absent): restore a parked
    old folder whose swap was cut short, delete the staging folders of killed
    replacements and our temp files in ``target`` (and in its ``figures``/``check``).
    Nothing is removed whose name and content are not both ours.  ``ours`` tells a
    folder of ours (default: a run folder, :func:`folder_kind`)."""
    target = Path(os.path.abspath(target))
    ours = ours or _is_run_of_ours
    if not os.path.lexists(target):
        for kind, p in _leftovers(target, ours):
            if kind == "old" and not os.path.lexists(target):
                os.rename(p, target)
    for _, p in _leftovers(target, ours):
        shutil.rmtree(p, ignore_errors=True)
    if not target.is_dir() or target.is_symlink() or not ours(target):
        return
    pio.remove_temp_files(target, own=lambda name: name in OWN_FILES or name == REPORT_FILE
                          or name.endswith(_OWN_SUFFIXES))
    for sub in OWN_DIRS:  # the run's own folders (their content checked by foreign_entries)
        d = target / sub
        if d.is_dir() and not d.is_symlink():
            pio.remove_temp_files(d, own=lambda name, sub=sub: _own_in(sub, name))
        for _, p in _leftovers(d, is_output_of_ours):
            shutil.rmtree(p, ignore_errors=True)


def is_output_of_ours(folder: Path) -> bool:
    return output_kind(folder) in ("empty", "output")


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
    return pio.temp_file_target(name) in OWN_FILES


def foreign_entries(folder: str | Path) -> list[str]:
    """Names in ``folder`` that pyrovae did not write (sorted); only these block deletion.

    Ours: the files and folders of the layout (regular files and folders, never
    links), our temp files (exact names), in ``figures``/``check`` files with our
    suffixes, and the staging or parked copies of ``check`` left by a killed check.
    """
    folder = Path(folder)
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            out.append(p.name)
        elif p.is_file() and (p.name in OWN_FILES or _is_our_temp(p.name)):
            continue
        elif p.is_dir() and (p.name in OWN_DIRS
                             or any(_sibling_kind(p.name, d) for d in OWN_DIRS)):
            own = p.name if p.name in OWN_DIRS else CHECK_DIR
            out.extend(f"{p.name}/{q.name}" for q in sorted(p.iterdir())
                       if q.is_symlink() or not q.is_file() or not _own_in(own, q.name))
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


def output_kind(folder: str | Path) -> str:
    """What a ``check`` output folder is: ``absent``, ``empty``, ``output`` (only what a
    check writes: ``report.json`` and the figures it lists, and our temp files) or
    ``foreign`` (anything else: pyrovae will not replace it)."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        return "absent"
    if folder.is_symlink() or not folder.is_dir():
        return "foreign"
    if not any(folder.iterdir()):
        return "empty"
    return "foreign" if foreign_output_entries(folder) else "output"


def foreign_output_entries(folder: Path) -> list[str]:
    """Names in a check output folder that a check did not write (empty when none)."""
    names = sorted(p.name for p in folder.iterdir())
    report = folder / REPORT_FILE
    if not names:
        return []
    if report.is_symlink() or not report.is_file():
        return names[:3]
    try:
        figures = pio.read_json(report, str(report)).get("figures") or {}
        listed = {Path(str(v)).name for v in figures.values() if v}
    except (PyrovaeError, AttributeError):
        return [REPORT_FILE]
    out = []
    for name in names:
        p = folder / name
        target = pio.temp_file_target(name)
        own = (name == REPORT_FILE or name in listed
               or (target is not None and (target == REPORT_FILE or target.endswith(".png"))))
        if p.is_symlink() or not p.is_file() or not own:
            out.append(name)
    return out


def check_layout(folder: Path) -> None:
    """Refuse a run folder where a name of its layout is not what pyrovae wrote there
    (a symbolic link, or a folder in a file's place): nothing is written through it.
    Called before a writer changes anything."""
    for name in sorted(OWN_FILES | OWN_DIRS):
        p = folder / name
        if not os.path.lexists(p):
            continue
        want_dir = name in OWN_DIRS
        if p.is_symlink() or (p.is_dir() if not want_dir else not p.is_dir()):
            what = "a symbolic link" if p.is_symlink() else "a folder" if p.is_dir() else "a file"
            raise PyrovaeError(f"{p} is {what}, not the {'folder' if want_dir else 'file'} "
                               "pyrovae wrote there; pyrovae will not write through it: "
                               "restore it, or start again with --overwrite")
        if want_dir:
            links = sorted(q.name for q in p.iterdir() if q.is_symlink())
            if links:
                raise PyrovaeError(f"{p / links[0]} is a symbolic link, not a file pyrovae "
                                   "wrote; pyrovae will not replace it: remove it, or start "
                                   "again with --overwrite")


def prepare_run_folder(path: str | Path, *, overwrite: bool = False) -> tuple[Path, bool]:
    """Check that ``path`` may receive a new run (call it under the :class:`RunLock`).

    Returns ``(path, replace)``: ``replace`` is True when an existing run is to be
    replaced (only with ``overwrite``; build the new one in :func:`staging_folder`
    and swap it in at the end).  An empty folder or an unfinished start of ours is
    reused; a folder that is not our run, or holds files we did not write, is never
    replaced.
    """
    path = own_path(path)
    if not os.path.lexists(path):
        clean_leftovers(path)  # a run parked by a swap cut short comes back
    kind = folder_kind(path)
    if kind == "foreign":
        if path.exists() and not path.is_dir():
            raise PyrovaeError(f"run folder {path} exists and is not a folder")
        extra = foreign_entries(path)
        why = (f"it holds files pyrovae did not write ({', '.join(extra[:3])[:120]})"
               if extra else f"it is not a pyrovae run (no valid {MANIFEST_FILE})")
        raise PyrovaeError(f"run folder {path} exists and {why}; pyrovae will not "
                           "replace it (nor change anything in it): choose another --out")
    clean_leftovers(path)  # ours: now its leftovers may go
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


def spec_binding(state: Mapping[str, Any], spec: Mapping[str, Any], ckpt: Path) -> str | None:
    """None when ``spec`` (``spec.yaml``'s, normalized) is the spec the checkpoint was
    trained with, else what differs, one phrase.

    The checkpoint holds the spec's hash (:func:`~pyrovae.runs.spec.bound_spec_hash`,
    ``train.epochs`` aside) and one hash per top-level key
    (:func:`~pyrovae.runs.spec.section_hashes`), not a second copy of the spec: the hash
    decides, the per-key hashes name the keys that changed.  A checkpoint written
    before (holding its whole spec) is compared key by key.  A checkpoint whose hashes
    disagree with each other, or that holds neither, is a PyrovaeError."""
    from pyrovae.runs.spec import (
        bound_spec_hash,
        changed_sections,
        normalize_spec,
        section_hashes,
        spec_diff,
    )

    bound, sections, saved = state.get("spec_hash"), state.get("spec_sections"), state.get("spec")
    if isinstance(saved, dict):  # written before checkpoints held hashes only
        try:  # the checkpoint's spec as written hashes to the run's: no second normalisation
            if isinstance(bound, str) and bound == bound_spec_hash(saved) \
                    == bound_spec_hash(spec):
                return None
        except (TypeError, ValueError):  # not plain JSON: normalised (and refused) below
            pass
        try:
            saved = normalize_spec(saved)
        except PyrovaeError as exc:
            raise PyrovaeError(f"{ckpt}: its spec is not valid any more ({exc})") from None
        if isinstance(bound, str) and bound != bound_spec_hash(saved):
            raise PyrovaeError(f"{ckpt}: its spec does not match the spec hash it holds")
        if bound_spec_hash(saved) == bound_spec_hash(spec):
            return None
        return spec_diff(saved, spec, ignore=("train.epochs",),
                         names=("checkpoint", "spec.yaml")) or "it differs"
    if not isinstance(bound, str):
        raise PyrovaeError(f"{ckpt}: not a run checkpoint (it holds no spec hash)")
    if bound == bound_spec_hash(spec):
        if isinstance(sections, Mapping) and dict(sections) != section_hashes(spec):
            raise PyrovaeError(f"{ckpt}: its per-key spec hashes do not match the spec hash "
                               "it holds")
        return None
    changed = changed_sections(sections, spec)
    return f"changed since training: {', '.join(changed)}" if changed else "it differs"


def verify_binding(path: Path, state: dict[str, Any], spec: Mapping[str, Any],
                   ckpt: Path | None = None) -> None:
    """One spec per run: ``spec.yaml`` must be the spec the checkpoint was trained with
    (:func:`spec_binding`: the same hash, ``train.epochs`` aside, since a resume that
    raised it rewrites ``spec.yaml`` first), and the manifest must name the data
    fingerprint the checkpoint holds.  Else a PyrovaeError naming the file."""
    ckpt = ckpt or path / CHECKPOINT_FILE
    if not isinstance(state.get("data_fingerprint"), str):
        raise PyrovaeError(f"{ckpt}: not a run checkpoint (it holds no data fingerprint)")
    differs = spec_binding(state, spec, ckpt)
    if differs is not None:
        raise PyrovaeError(f"{path / SPEC_FILE} is not the spec {ckpt.name} was trained "
                           f"with ({differs}); restore it, or train again")
    manifest = read_manifest(path) or {}
    fp = (manifest.get("data") or {}).get("fingerprint") if isinstance(manifest, dict) else None
    if fp is not None and fp != state["data_fingerprint"]:
        raise PyrovaeError(f"{path / MANIFEST_FILE} names other data (fingerprint "
                           f"{pio.short(fp, 14)}) than {ckpt.name} was trained on")


def load_model_state(vae: Any, state: dict[str, Any], path: Path) -> None:
    """Load the checkpoint's parameters into ``vae``: every name, shape and dtype must be
    the model's (an integer tensor where the model has floats is refused, never
    silently converted)."""
    ckpt = path / CHECKPOINT_FILE if path.is_dir() else path
    own = vae.state_dict()
    for k, v in state["model"].items():
        if k in own and v.dtype != own[k].dtype:
            raise PyrovaeError(f"{ckpt}: parameter {pio.short(k)} has dtype "
                               f"{str(v.dtype).replace('torch.', '')}, the model's is "
                               f"{str(own[k].dtype).replace('torch.', '')}; refused")
    try:
        vae.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise PyrovaeError(
            f"{ckpt}: checkpoint does not match its spec ({str(exc).splitlines()[0][:200]})"
        ) from None


#: ``which`` checkpoint of a run: the last epoch's or the best held-out epoch's.
WHICH = ("last", "best")


def checkpoint_path(path: Path, which: str = "last") -> Path:
    """The file of the ``which`` checkpoint (``last``: ``checkpoint.pt``; ``best``:
    ``best.pt``, written when the spec keeps the best); a PyrovaeError if it is missing."""
    if which not in WHICH:
        raise PyrovaeError(f"which: expected one of {', '.join(WHICH)}, got {pio.short(which)}")
    if which == "last":
        return path / CHECKPOINT_FILE
    best = path / BEST_FILE
    if not best.is_file():
        raise PyrovaeError(f"{path}: no best checkpoint ({BEST_FILE}); it is written when the "
                           "run has held-out data and train.checkpoint.keep_best is true")
    return best


def load_run(path: str | Path, *, history: bool = True,
             which: str = "last") -> tuple[Any, dict[str, Any], Any]:
    """``(vae, spec, history)`` of a run folder, the model rebuilt from its spec.

    The checkpoint's whole-state checksum and finiteness are verified
    (:func:`pyrovae.io.load_checkpoint`), and that ``spec.yaml`` is the spec it was
    trained with (:func:`verify_binding`).  ``history=False`` skips reading
    ``history.json`` (None in its place): a command that does not need it never parses it.
    ``which="best"`` loads the parameters of the best held-out epoch (``best.pt``).
    """
    from pyrovae.model.vae import VAE

    path = check_run_folder(own_path(path))
    spec = read_spec(path / SPEC_FILE)
    ckpt = checkpoint_path(path, which)
    state = load_checkpoint(ckpt)
    verify_binding(path, state, spec, ckpt)
    vae = VAE.from_spec(spec)
    load_model_state(vae, state, ckpt)
    return vae, spec, read_history(path) if history else None
