"""``pyrovae`` command line: one module per subcommand.

Each module in :data:`COMMANDS` defines ``register(subparsers)`` which adds its
parser and sets ``func=run``; ``run(args)`` returns an exit code.  User errors
(:class:`~pyrovae.errors.PyrovaeError`, files that cannot be read or written)
print one line on stderr and exit with status 2, never a traceback; so do
argument errors (argparse, ``SystemExit(2)``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pyrovae.errors import PyrovaeError

#: Subcommand modules, in the order ``pyrovae --help`` lists them.
COMMANDS = ("train", "evaluate", "sample", "families", "check")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyrovae",
        description="Variational autoencoders in Pyro: train, evaluate, sample, check.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"pyrovae.cli.{name}").register(sub)
    return parser


def _version() -> str:
    """``pyrovae X (torch Y, pyro Z, Python W)``: the installed distributions' versions."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    py = ".".join(map(str, sys.version_info[:3]))
    return f"pyrovae {v('pyrovae')} (torch {v('torch')}, pyro {v('pyro-ppl')}, Python {py})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PyrovaeError as exc:
        print(f"pyrovae {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the user named cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"pyrovae {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pyrovae {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
