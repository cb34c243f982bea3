"""The `seft` command line: one module per command group, each a `register(subparsers)` and thin
`cmd_*` functions. Packages built on the core (seft_services: `seft serve`) add their commands
through the `seft.commands` entry point, so the core never imports them."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from seft.cli import clients, pipeline, store, train
from seft.errors import SeftError

GROUPS = (pipeline, store, train, clients)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seft", description="Align LLMs by self-evolution (SEFT).")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    for ep in entry_points(group="seft.commands"):
        ep.load().register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SeftError as exc:  # SpecError included: each carries its exit code
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
