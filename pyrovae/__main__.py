"""``python -m pyrovae ...``: the ``pyrovae`` command (also what
``torchrun --nproc-per-node N -m pyrovae train ...`` runs in each process)."""

import sys

from pyrovae.cli import main

if __name__ == "__main__":
    sys.exit(main())
