"""Flags that several subcommands share: ``--progress`` and a flag declared by a
:class:`~pyrovae.registry.Param` (its type read off the Param's kind)."""

from __future__ import annotations

import argparse
from typing import Any

from pyrovae.registry import Param

__all__ = ["add_param_flag", "add_progress_flag"]

#: ``--progress`` of the commands with long steps (``check``, ``evaluate``).
PROGRESS_HELP = ("show the progress of long steps on stderr: a live line on a terminal; "
                 "--progress also off one (a line at most every 10 s); --no-progress: none "
                 "(default: on a terminal only)")


def add_progress_flag(parser: argparse.ArgumentParser, help: str = PROGRESS_HELP) -> None:
    """``--progress`` / ``--no-progress`` (None when neither is given)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=help)


def add_param_flag(parser: argparse.ArgumentParser, name: str, param: Param, *,
                   default: Any, metavar: str, help: str) -> None:
    """``--NAME`` (underscores as dashes) for the option ``name`` declared by ``param``:
    an int for the integer kinds, a float for the number kinds, else a string; a ``bool``
    option is a switch. Its value is validated later, by the Param, where it enters."""
    flag = f"--{name.replace('_', '-')}"
    if param.kind == "bool":
        parser.add_argument(flag, dest=name, action="store_true", help=help)
        return
    kind = (int if param.kind.endswith("int") or param.kind == "seed" else
            float if param.kind.endswith("float") else str)
    parser.add_argument(flag, dest=name, type=kind, default=default, metavar=metavar,
                        help=help)
