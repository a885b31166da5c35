"""Atomic file writes, bounded parsing and safe checkpoints: the I/O every layer shares.

Every file is written to a temporary name in the same folder and renamed into
place (``os.replace``), so a killed process never leaves a half-written file.
JSON is written strictly (no ``NaN``/``Infinity``: non-finite numbers become
``null`` and their places are listed under ``"non_finite"``).

Config text (YAML, TOML, JSON) is parsed with limits, checked before anything
else looks at it: at most :data:`MAX_CONFIG_BYTES` bytes, :data:`MAX_DEPTH`
levels of nesting, :data:`MAX_NODES` values once YAML aliases are expanded, and
integers of magnitude below :data:`MAX_INT`.  YAML is read as YAML 1.2 reads
numbers: ``1e-3`` is a float, not a string.

Checkpoints are loaded with ``torch.load(weights_only=True)``: they never
unpickle arbitrary objects.  Each holds a SHA-256 checksum of its whole
content (every tensor and every plain value), verified on load, and only
finite parameters: a checkpoint is never written with a non-finite value, and
one that holds any is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from pyrovae.errors import PyrovaeError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    The temporary file is flushed and fsynced before ``os.replace``, and the
    folder after it, so ``path`` holds either the old or the new content, never
    a mixture, even if the process is killed or the machine stops.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX: mkstemp's 0600 -> the usual mode
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # name the file the user knows, never our temp file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    _fsync_dir(path.parent)


#: Suffix of the temporary files :func:`atomic_write_bytes` writes (``.NAME.XXXXXXXX.tmp``).
TEMP_SUFFIX = ".tmp"
#: The characters and length of the random part of :mod:`tempfile`'s names.
_RANDOM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_RANDOM_LEN = 8


def is_random_part(text: str) -> bool:
    """True for the 8 random characters :mod:`tempfile` puts in the names it makes."""
    return len(text) == _RANDOM_LEN and set(text) <= _RANDOM_CHARS


def temp_file_target(name: str) -> str | None:
    """The file name an :func:`atomic_write_bytes` temporary file ``.NAME.XXXXXXXX.tmp``
    was written for (``NAME``), or None when ``name`` is not one of ours: an exact
    pattern matched by string comparison, never a glob of user text."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    core = name[1:-len(TEMP_SUFFIX)]
    target, dot, rand = core.rpartition(".")
    return target if dot and target and is_random_part(rand) else None


def is_temp_file(name: str) -> bool:
    """True for the name of one of our temporary files (``.NAME.XXXXXXXX.tmp``)."""
    return temp_file_target(name) is not None


def remove_temp_files(folder: str | Path, own=None) -> list[Path]:
    """Delete our temporary files left in ``folder`` (not below it) by a killed writer.

    Only regular files whose name is exactly our pattern are removed, and only those
    for a target name ``own(target)`` accepts (default: any); the caller must first
    have established that ``folder`` is one of ours.
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir() and not folder.is_symlink():
        for p in folder.iterdir():
            target = temp_file_target(p.name)
            if (target is not None and (own is None or own(target)) and not p.is_symlink()
                    and p.is_file()):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(obj: Any) -> tuple[Any, list[str]]:
    """``(copy of obj with every non-finite float replaced by None, the places replaced)``."""
    places: list[str] = []

    def walk(v: Any, where: str) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            places.append(where or "(top)")
            return None
        if isinstance(v, Mapping):
            return {k: walk(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{where}[{i}]") for i, x in enumerate(v)]
        return v

    return walk(obj, ""), places


def json_text(obj: Any) -> str:
    """Strict JSON text of ``obj``: non-finite numbers become ``null``; when ``obj`` is
    a mapping their places are listed under ``"non_finite"``."""
    clean, places = strict_json(obj)
    if places and isinstance(clean, dict):
        clean["non_finite"] = places
    return json.dumps(clean, indent=2, sort_keys=False, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (see :func:`json_text`) atomically."""
    atomic_write_text(path, json_text(obj))


# ------------------------------------------------------------------ bounded parsing
#: Largest config file read (bytes).
MAX_CONFIG_BYTES = 1 << 20
#: Largest JSON file of a run folder read (history, metrics, manifest; bytes).
MAX_JSON_BYTES = 64 << 20
#: Largest data file read, counted decompressed (bytes): the size of an ``.npz``
#: member or a gzipped IDX file is read from its headers and refused above this
#: before any data is decompressed.  Raised for one process by the environment
#: variable ``PYROVAE_MAX_DATA_BYTES``.
MAX_DATA_BYTES = 1 << 30


def data_budget() -> int:
    """:data:`MAX_DATA_BYTES`, or ``PYROVAE_MAX_DATA_BYTES`` when that is a larger integer."""
    raw = os.environ.get("PYROVAE_MAX_DATA_BYTES", "")
    try:
        return max(MAX_DATA_BYTES, int(raw)) if raw.strip() else MAX_DATA_BYTES
    except ValueError:
        return MAX_DATA_BYTES


def check_data_size(nbytes: int, what: str) -> None:
    """Refuse data of ``nbytes`` bytes (decompressed) above :func:`data_budget`."""
    limit = data_budget()
    if nbytes > limit:
        raise PyrovaeError(f"{what}: holds {nbytes / 2**30:.3g} GiB of data once decompressed, "
                           f"above the limit of {limit / 2**30:.3g} GiB; refused before reading "
                           "it (raise the limit with PYROVAE_MAX_DATA_BYTES)")


#: Deepest nesting of mappings and lists in a config (the spec itself needs 3).
MAX_DEPTH = 32
#: Most values in a config, YAML aliases expanded (an alias "bomb" is refused).
MAX_NODES = 100_000
#: Integers in a config must have magnitude below this (2**64).
MAX_INT = 2**64


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages never echo a huge value."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT:
        return f"an integer of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_shape(data: Any, what: str) -> Any:
    """Refuse data nested deeper than :data:`MAX_DEPTH`, with more than :data:`MAX_NODES`
    values (aliases expanded) or integers of magnitude :data:`MAX_INT` and above.

    Iterative, so it never recurses; stops at the first excess.
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    count = 0
    while stack:
        v, where, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise PyrovaeError(f"{what}: more than {MAX_NODES} values (YAML aliases expanded); "
                               "refused")
        if depth > MAX_DEPTH:
            raise PyrovaeError(f"{what}: nested more than {MAX_DEPTH} levels deep; refused")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= MAX_INT:
            # the key path first, as every spec error names it
            if not where:
                raise PyrovaeError(f"{what}: integer too large ({short(v)}; the limit is 2**64)")
            raise PyrovaeError(f"{where}: integer too large ({short(v)}; the limit is 2**64; "
                               f"in {what})")
        if isinstance(v, Mapping):
            stack.extend((x, f"{where}.{k}" if where else str(k), depth + 1)
                         for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v))
    return data


class _TooDeep(Exception):
    """A YAML document nested deeper than :data:`MAX_DEPTH` (stopped while composing)."""


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 numbers: ``1e-3`` and ``1E5`` are floats; composing stops
    at the first node nested deeper than :data:`MAX_DEPTH` (a 1,500-level document is
    refused after 33 levels, not parsed whole first)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:  # the document's top node is depth 0
                raise _TooDeep
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_text(text: str, fmt: str, what: str) -> Any:
    """Parse config text (``fmt``: yaml, toml or json) within the limits above.

    Any failure, a too-long integer or too-deep nesting included, is a one-line
    :class:`PyrovaeError` naming ``what``; never an echo of the text.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise PyrovaeError(f"{what}: larger than {MAX_CONFIG_BYTES} bytes; refused")
    try:
        if fmt == "yaml":
            data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
        elif fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "json":
            data = json.loads(text)
        else:
            raise PyrovaeError(f"{what}: unknown format {fmt!r}")
    except (RecursionError, _TooDeep):
        raise PyrovaeError(f"{what}: nested too deeply (more than {MAX_DEPTH} levels); "
                           "refused") from None
    except (yaml.YAMLError, ValueError) as exc:  # JSON/TOML decode errors are ValueErrors
        raise PyrovaeError(f"{what} is malformed: {_first_line(exc)}") from None
    return check_shape(data, what)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "Exceeds the limit" in text and "digits" in text:
        return "an integer longer than 4300 digits"
    return text[:200] + (" ..." if len(text) > 200 else "")


def read_text(path: str | Path, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The text of a file of at most ``max_bytes`` bytes (undecodable bytes replaced)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise PyrovaeError(f"{what}: {size} bytes, larger than the {max_bytes} "
                               "bytes allowed; refused")
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise PyrovaeError(f"{what}: cannot read it ({exc.strerror or exc})") from None


def read_json(path: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file of a run folder, parsed within the limits (deep nesting refused)."""
    text = read_text(path, what, max_bytes)
    try:
        data = json.loads(text)
    except RecursionError:
        raise PyrovaeError(f"{what}: nested too deeply; refused") from None
    except ValueError as exc:
        raise PyrovaeError(f"{what} is malformed: {_first_line(exc)}") from None
    stack, depth = [(data, 0)], 0
    while stack:  # the same depth limit as configs, without the value count
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PyrovaeError(f"{what}: nested more than {MAX_DEPTH} levels deep; refused")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return data


# ------------------------------------------------------------------ checkpoints
def _tensors(obj: Any, where: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a nested state, with its key path, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [(where, obj)]
    out: list[tuple[str, torch.Tensor]] = []
    if isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            if not (where == "" and k == "checksum"):
                out.extend(_tensors(obj[k], f"{where}.{k}" if where else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.extend(_tensors(v, f"{where}[{i}]"))
    return out


def tensor_checksum(state: Mapping[str, Any]) -> str:
    """SHA-256 of every tensor in ``state`` (key path, dtype, shape and bytes): the
    checksum of checkpoints written before issue 19 (see :func:`state_checksum`)."""
    h = hashlib.sha256()
    for where, t in _tensors(state):
        t = t.detach().cpu().contiguous()
        h.update(f"{where}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


#: Prefix of a whole-state checksum (older checkpoints hold a bare tensor checksum).
STATE_CHECKSUM = "sha256-state:"


def _digest(h: Any, v: Any) -> None:
    """Feed one value to the hash, tagged by its type (``1`` and ``1.0`` and ``True`` and
    ``"1"`` differ); mapping keys are sorted by their tagged form."""
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif v is None or isinstance(v, bool):
        h.update(f"B{v}|".encode())
    elif isinstance(v, int):
        h.update(f"I{v}|".encode())
    elif isinstance(v, float):
        h.update(f"F{v.hex()}|".encode())
    elif isinstance(v, str):
        b = v.encode("utf-8", "surrogatepass")
        h.update(f"S{len(b)}|".encode() + b)
    elif isinstance(v, bytes):
        h.update(f"Y{len(v)}|".encode() + v)
    elif isinstance(v, Mapping):
        keyed = []
        for k, x in v.items():
            kh = hashlib.sha256()
            _digest(kh, k)
            keyed.append((kh.hexdigest(), x))
        h.update(f"M{len(keyed)}|".encode())
        for k, x in sorted(keyed, key=lambda kv: kv[0]):
            h.update(k.encode())
            _digest(h, x)
    elif isinstance(v, (list, tuple)):
        h.update(f"{'L' if isinstance(v, list) else 'U'}{len(v)}|".encode())
        for x in v:
            _digest(h, x)
    else:
        h.update(f"O{type(v).__name__}|{v!r}|".encode())


def state_checksum(state: Mapping[str, Any]) -> str:
    """SHA-256 of the whole state but its ``checksum`` entry: every tensor (dtype, shape,
    bytes) and every plain value (numbers bit for bit, strings, flags, None), keys and
    nesting included, so a change anywhere (a learning rate, ``amsgrad``, the epoch, the
    spec, the data fingerprint) changes it."""
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in state.items() if k != "checksum"})
    return STATE_CHECKSUM + h.hexdigest()


def _non_finite(state: Mapping[str, Any]) -> str | None:
    """The key path of the first floating tensor holding NaN or ±inf, else None."""
    for where, t in _tensors(state):
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return where
    return None


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` the state (tensors and plain data only) atomically, with the
    checksum of the whole state (:func:`state_checksum`); a state holding a
    non-finite value is never written."""
    bad = _non_finite(state)
    if bad is not None:
        raise PyrovaeError(f"{Path(path).name}: refused to write a checkpoint with "
                           f"non-finite values ({bad})")
    state = {**state, "checksum": state_checksum(state)}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely: ``torch.load(weights_only=True)`` reads tensors and
    plain data only, so a pickle that would import or call anything is refused
    (a PyrovaeError naming the offending object) and its code never runs."""
    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's advice (weights_only=False) is not for us
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read the file is the file's problem
        raise PyrovaeError(f"{path}: refused to load checkpoint ({_load_problem(exc)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise PyrovaeError(f"{path}: not a pyrovae checkpoint (no 'model' parameters)")
    bad = [k for k, v in state["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise PyrovaeError(f"{path}: not a pyrovae checkpoint ('model' entry {short(bad[0])} "
                           "is not a tensor)")
    saved = state.get("checksum")
    if isinstance(saved, str) and saved.startswith(STATE_CHECKSUM):
        ok = saved == state_checksum(state)
    else:  # written before issue 19: only its tensors were checksummed
        ok = saved is not None and saved == tensor_checksum(state)
    if not ok:
        what = "has no checksum" if "checksum" not in state else "fails its checksum"
        raise PyrovaeError(f"{path}: damaged checkpoint ({what}: its content is not the "
                           "content written)")
    where = _non_finite(state)
    if where is not None:
        raise PyrovaeError(f"{path}: refused: the checkpoint holds non-finite values "
                           f"({short(where)})")
    return state


def _load_problem(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"(?:Unsupported global|GLOBAL) ([\w.]+)", text)
    if found:
        name = found.group(1)
        return (f"it holds a pickled Python object ({name}) that could run code; "
                "pyrovae checkpoints hold only tensors and plain data")
    if "WeightsUnpickler error:" in text:
        rest = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        detail = rest[0].strip() if rest else "unknown"
        return (f"not a plain tensor checkpoint: {detail}; corrupt, or pickled data "
                "beyond tensors and plain values")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    return f"not a readable torch checkpoint: {first}"


# ------------------------------------------------------------------ shareable weights
#: The marker in a ``model.safetensors`` header written by pyrovae, and its version.
WEIGHTS_FORMAT = "pyrovae-weights"
WEIGHTS_VERSION = "1"
#: Largest weights file read (a bound like the configs'; 16 GiB).
MAX_WEIGHTS_BYTES = 16 << 30


def save_weights(path: str | Path, tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` as a `safetensors <https://huggingface.co/docs/safetensors>`_
    file, atomically: raw little-endian tensor bytes after a JSON header, nothing
    pickled, readable by any safetensors reader (Python, Rust, JavaScript).  Every
    tensor is copied to a contiguous CPU tensor of its own (tied weights are stored
    twice).  ``metadata`` (strings) goes into the header with our format marker; a
    non-finite value is never written.

    Raises:
        PyrovaeError: a tensor holds NaN or ±inf.
    """
    from safetensors.torch import save

    plain = {str(k): v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    bad = _non_finite(plain)
    if bad is not None:
        raise PyrovaeError(f"{Path(path).name}: refused to write weights with non-finite "
                           f"values ({bad})")
    meta = {**{str(k): str(v) for k, v in (metadata or {}).items()},
            "format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION}
    atomic_write_bytes(path, save(plain, metadata=meta))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a ``model.safetensors`` written by :func:`save_weights`
    (CPU tensors; nothing unpickled: safetensors parses a JSON header and raw bytes).

    Raises:
        PyrovaeError: the file is missing, larger than :data:`MAX_WEIGHTS_BYTES`, not a
            safetensors file, not written by pyrovae (no format marker), of a newer
            version, or holds non-finite values.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise PyrovaeError(f"weights not found: {path}")
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise PyrovaeError(f"{path}: {size} bytes, larger than the {MAX_WEIGHTS_BYTES} "
                           "bytes allowed; refused")
    data = path.read_bytes()
    try:
        tensors = load(data)
        meta = _safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise PyrovaeError(f"{path}: not a safetensors file ({_first_line(exc)})") from None
    if meta.get("format") != WEIGHTS_FORMAT:
        raise PyrovaeError(f"{path}: not pyrovae weights (no '{WEIGHTS_FORMAT}' marker in "
                           "its header)")
    if meta.get("version") != WEIGHTS_VERSION:
        raise PyrovaeError(f"{path}: weights format version {short(meta.get('version'))}; "
                           f"this pyrovae reads version {WEIGHTS_VERSION}")
    bad = _non_finite(tensors)
    if bad is not None:
        raise PyrovaeError(f"{path}: refused: the weights hold non-finite values ({short(bad)})")
    return tensors, meta


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte length, then JSON)."""
    if len(data) < 8:
        raise ValueError("shorter than its header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
