"""Where an example writes: ``--out DIR`` if given, else a fresh ``runs/examples/NAME-TIME``.

``runs/`` is git-ignored, so running an example from a clone never touches a tracked
file; a folder that already exists is never reused (a numbered suffix is added).
"""

from __future__ import annotations

import time
from pathlib import Path


def output_folder(name: str, out: str | None = None) -> Path:
    """Create and return the folder an example writes its figures and JSON into."""
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    base = Path("runs") / "examples" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
