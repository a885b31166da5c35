"""``pyrovae families``: list the registered priors, likelihoods, guides,
networks (encoder, decoder), contexts, objectives and KL-weight schedules with
their parameters."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pyrovae.registry import REGISTRIES

#: The kinds ``--kind`` accepts: the registry names, known without importing torch, so a
#: mistyped ``--kind`` is refused by argparse before the families are loaded.
KINDS: tuple[str, ...] = tuple(REGISTRIES)


def register(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "families",
        help="list the registered families and their parameters",
        description="List every family a spec can name (prior, likelihood, guide, "
        "encoder, decoder, context, objective, kl_weight) with its parameters, types and "
        "defaults.",
    )
    p.add_argument("--kind", choices=KINDS, help="only this kind of family")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pyrovae.runs.families import format_families, list_families

    listing = list_families(args.kind)
    if args.json:
        json.dump(listing, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_families(listing))
    return 0
