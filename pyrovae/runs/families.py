"""List the registered families and their parameters (API behind ``pyrovae families``).

>>> from pyrovae.runs.families import list_families
>>> sorted(list_families()["prior"])[:3]
['flow', 'laplace', 'mixture']
>>> list_families("prior")["prior"]["mixture"]["params"]["components"]["default"]
10
"""

from __future__ import annotations

import json
from typing import Any

from pyrovae.errors import PyrovaeError
from pyrovae.registry import REGISTRIES

# Importing the spec imports every family module, which fills the registries.
from pyrovae.runs import spec as _spec  # noqa: F401

#: Kinds in listing order (the spec keys the registries fill).
KINDS: tuple[str, ...] = tuple(REGISTRIES)


def list_families(kind: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{kind: {name: {"doc": ..., "params": {param: {"type", "doc", "default",
    "required"}}}}}`` for every registry, or only ``kind`` (``prior``, ``likelihood``,
    ``guide``, ``objective``, ``kl_weight``)."""
    if kind is not None and kind not in REGISTRIES:
        raise PyrovaeError(f"--kind: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    listing = {k: REGISTRIES[k].describe() for k in ((kind,) if kind else KINDS)}
    for name, info in listing.get("objective", {}).items():
        # which estimator the objective's defaults put in force (e.g. the KL term)
        info["estimator"] = REGISTRIES["objective"].build(name).describe()
    return listing


def format_families(listing: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Plain-text rendering of :func:`list_families` (what the CLI prints)."""
    lines: list[str] = []
    for kind, families in listing.items():
        lines.append(f"{kind}:")
        for name, info in families.items():
            lines.append(f"  {name}: {info['doc']}")
            if "estimator" in info:
                lines.append(f"      estimator in force: {info['estimator']}")
            for pname, p in info["params"].items():
                default = "required" if p["required"] else f"default {json.dumps(p['default'])}"
                doc = f" -- {p['doc']}" if p["doc"] else ""
                lines.append(f"      {pname} ({p['type']}; {default}){doc}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
