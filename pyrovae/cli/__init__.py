"""``pyrovae`` command line: one module per subcommand.

Each module in :data:`COMMANDS` defines ``register(subparsers)`` which adds its
parser and sets ``func=run``; ``run(args)`` returns an exit code.  User errors
(:class:`~pyrovae.errors.PyrovaeError`, files that cannot be read or written)
print one line on stderr and exit with status 2, never a traceback; so do
argument errors (argparse, ``SystemExit(2)``).  Messages are cut to
:data:`MAX_MESSAGE` characters.  Warnings raised by torch, Pyro or NumPy during
a command are not shown (ours are, one line each, after a successful command);
a closed pipe (``pyrovae ... | head``) ends the command quietly with status 0;
an output that cannot encode Unicode gets ASCII stand-ins (``>=`` for ``≥``);
SIGTERM ends a command like Ctrl-C (a half-built replacement run is removed).
"""

from __future__ import annotations

import argparse
import codecs
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence

from pyrovae.errors import PyrovaeError

#: Longest error message printed (characters); longer ones are cut.
MAX_MESSAGE = 400

#: Subcommand modules, in the order ``pyrovae --help`` lists them, with their one-line
#: help.  Only the module of the command being run is imported (each pulls in torch), so
#: ``pyrovae --help`` and ``pyrovae --version`` start fast.
COMMANDS: dict[str, str] = {
    "train": "train a VAE and write a run folder",
    "evaluate": "evaluate a run folder (ELBO, IWAE log-likelihood)",
    "sample": "sample from a trained model",
    "export": "write a run's weights as model.safetensors plus its spec",
    "families": "list the registered families and their parameters",
    "check": "check a guide against the exact posterior (toy problem or run folder)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


_ASCII = {"≥": ">=", "≤": "<=", "±": "+/-", "‖": "||", "−": "-", "×": "x", "→": "->",
          "…": "...", "κ": "k", "θ": "theta", "σ": "sigma", "μ": "mu", "β": "beta",
          "λ": "lambda", "k̂": "k-hat", "\u0302": "^"}


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    return "".join(_ASCII.get(c, "?") for c in bad), exc.end


codecs.register_error("pyrovae-ascii", _ascii_fallback)


def _readable_streams() -> None:
    """Streams that cannot encode Unicode (PYTHONIOENCODING=ascii) get ASCII stand-ins."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="pyrovae-ascii")
            except (ValueError, OSError):
                pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _quiet_broken_pipe() -> int:
    """``| head`` closed our stdout: point it at /dev/null so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 0


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the full arguments of the subcommand named in ``argv`` only (all of
    them when ``argv`` is ``None``)."""
    chosen = _chosen_command(argv)
    parser = _Parser(
        prog="pyrovae",
        description="Variational autoencoders in Pyro: train, evaluate, sample, check.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, text in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"pyrovae.cli.{name}").register(sub)
        else:
            sub.add_parser(name, help=text)
    return parser


def _chosen_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option)."""
    args = sys.argv[1:] if argv is None else argv
    for word in args:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


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
    _readable_streams()
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        with warnings.catch_warnings(record=True):  # imports warn too
            warnings.simplefilter("always")
            parser = build_parser(words)
            args = parser.parse_args(words)
    except KeyboardInterrupt:  # Ctrl-C while torch and Pyro are still being imported
        print("pyrovae: interrupted", file=sys.stderr)
        return 130
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        previous = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = int(args.func(args) or 0)
        for w in caught:  # ours only: torch's and Pyro's advice is not for our users
            if (issubclass(w.category, UserWarning)
                    and str(getattr(w, "filename", "")).startswith(_PACKAGE_DIR)):
                print(f"pyrovae {args.command}: warning: {_one_line(w.message)}",
                      file=sys.stderr)
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except PyrovaeError as exc:
        print(f"pyrovae {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the user named cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"pyrovae {args.command}: error: {_one_line(exc.strerror or exc)}{where}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pyrovae {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line(exc: object) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
