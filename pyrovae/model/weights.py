"""Shareable weights: a VAE as ``model.safetensors`` plus the spec beside it.

A weights folder holds two files::

    FOLDER/model.safetensors   every parameter and buffer of the VAE (safetensors: a
                               JSON header and raw tensor bytes; nothing pickled)
    FOLDER/spec.yaml           the spec that rebuilds the model (VAE.from_spec)

``spec.yaml`` holds the model's part of the spec (:attr:`VAE.spec`) or, for a run
exported by ``pyrovae export``, the run's whole spec (usable again as ``pyrovae
train --config``).  The weights file's header binds it to its spec: it holds the
SHA-256 of the model part, and a folder whose two files disagree is refused.

A network that is the user's own ``torch.nn.Module`` is recorded in the spec as
``{family: custom, module: ClassName}``; no code is ever saved, so loading such a
model takes the module again (``load_vae(folder, encoder=MyEncoder(),
decoder=MyDecoder())``): the class name must match, the weights are loaded into it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from pyrovae import io as pio
from pyrovae.errors import PyrovaeError
from pyrovae.model.spec import MODEL_KEYS

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "spec.yaml"
#: The names a weights folder holds (pyrovae writes and replaces only these).
WEIGHTS_FOLDER_FILES = (WEIGHTS_FILE, SPEC_FILE)

ModuleArg = nn.Module | type[nn.Module] | None


def model_spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the model part of a spec (:data:`MODEL_KEYS`), as canonical JSON."""
    part = {k: spec.get(k) for k in MODEL_KEYS}
    if part.get("model") in (None, "vae", {"family": "vae"}):  # the default kind: as before
        part.pop("model")
    shape = part.get("event_shape")
    if isinstance(shape, list) and len(shape) == 1:  # [D] and null both mean flat vectors
        part["event_shape"] = None
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def save_vae(vae: Any, folder: str | Path, *, spec: Mapping[str, Any] | None = None,
             overwrite: bool = False) -> Path:
    """Write ``vae``'s weights and spec to ``folder`` (created if needed).

    Args:
        vae: a :class:`~pyrovae.model.vae.VAE` (custom network modules included).
        folder: the folder to write ``model.safetensors`` and ``spec.yaml`` in.
        spec: the spec written beside the weights (default: ``vae.spec``, the model
            part); its model part must be ``vae.spec``.
        overwrite: replace a ``model.safetensors``/``spec.yaml`` already there.

    Returns:
        The folder.

    Raises:
        PyrovaeError: ``folder`` is a file, the files exist without ``overwrite``,
            ``spec`` does not describe ``vae``, or a weight is non-finite.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PyrovaeError(f"{folder} exists and is not a folder")
    own = vae.spec
    spec = dict(own if spec is None else spec)
    if model_spec_hash(spec) != model_spec_hash(own):
        raise PyrovaeError("spec: its model part is not the VAE's own spec")
    for name in WEIGHTS_FOLDER_FILES:
        p = folder / name
        if p.is_symlink() or (p.exists() and not p.is_file()):
            raise PyrovaeError(f"{p} exists and is not a regular file; pyrovae will not "
                               "write through it")
        if p.exists() and not overwrite:
            raise PyrovaeError(f"{p} exists; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"spec_sha256": model_spec_hash(own), "class": "VAE"}
    pio.save_weights(folder / WEIGHTS_FILE, vae.state_dict(), meta)
    pio.atomic_write_text(folder / SPEC_FILE, yaml.safe_dump(spec, sort_keys=False))
    return folder


def read_weights_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(spec, tensors)`` of a weights folder, the two checked against each other."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PyrovaeError(f"weights folder not found: {folder}")
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise PyrovaeError(f"{folder}: no {SPEC_FILE} beside the weights")
    what = f"{spec_path}: spec"
    spec = pio.parse_text(pio.read_text(spec_path, what), "yaml", what)
    if not isinstance(spec, dict):
        raise PyrovaeError(f"{spec_path}: expected a mapping")
    tensors, meta = pio.load_weights(folder / WEIGHTS_FILE)
    if meta.get("spec_sha256") != model_spec_hash(spec):
        raise PyrovaeError(f"{spec_path} is not the spec {WEIGHTS_FILE} was saved with "
                           "(its model part differs); restore it")
    return spec, tensors


def _module(arg: ModuleArg, role: str, entry: Any) -> nn.Module | None:
    """The user's module for a network the spec records as custom (checked by class name)."""
    custom = isinstance(entry, Mapping) and entry.get("family") == "custom"
    if arg is None:
        if custom:
            raise PyrovaeError(f"{role}: the saved model's {role} is your own module "
                               f"{entry.get('module')!s}; pass {role}={entry.get('module')}() "
                               "(pyrovae saves weights, never code)")
        return None
    if not custom:
        family = entry.get("family") if isinstance(entry, Mapping) else entry
        raise PyrovaeError(f"{role}: the saved model's {role} is the {family!r} family, rebuilt "
                           "from its spec; pass no module for it")
    if isinstance(arg, type) and issubclass(arg, nn.Module):
        arg = arg()
    if not isinstance(arg, nn.Module):
        raise PyrovaeError(f"{role}: expected a torch.nn.Module (or its class), got "
                           f"{type(arg).__name__}")
    if type(arg).__qualname__ != entry.get("module"):
        raise PyrovaeError(f"{role}: the weights were saved from a {entry.get('module')!s}, "
                           f"got a {type(arg).__qualname__}")
    return arg


def load_pretrained(cls: type, folder: str | Path, *, encoder: ModuleArg = None,
                    decoder: ModuleArg = None) -> Any:
    """The VAE (of class ``cls``) saved in ``folder`` by :meth:`VAE.save` or ``pyrovae
    export``, its weights loaded; nothing is unpickled.  This is
    :func:`pyrovae.load_vae` (see there); ``cls`` builds the model from the spec
    (``cls.from_spec``)."""
    spec, tensors = read_weights_folder(folder)
    enc = _module(encoder, "encoder", spec.get("encoder"))
    dec = _module(decoder, "decoder", spec.get("decoder"))
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: not the user's
        vae = cls.from_spec(spec, encoder=enc, decoder=dec)
    floats = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(floats) == 1:
        vae.to(floats.pop())
    own = vae.state_dict()
    for k, v in tensors.items():
        if k in own and v.dtype != own[k].dtype:
            raise PyrovaeError(f"{Path(folder) / WEIGHTS_FILE}: {pio.short(k)} has dtype "
                               f"{str(v.dtype).replace('torch.', '')}, the model's is "
                               f"{str(own[k].dtype).replace('torch.', '')}")
    try:
        vae.load_state_dict(tensors)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise PyrovaeError(f"{Path(folder) / WEIGHTS_FILE}: the weights do not fit the model "
                           f"({str(exc).splitlines()[0][:200]})") from None
    return vae.eval()
