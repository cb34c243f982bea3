"""Argument types and options more than one command group uses."""

from __future__ import annotations

import argparse

OVERRIDES = {"action": "append", "default": [], "metavar": "FIELD=VALUE",
             "help": "override a spec field, e.g. --set reviser_training.learning_rate=1e-5"}


def positive(text: str) -> int:
    """argparse type: argparse's error names the flag, this names the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value
