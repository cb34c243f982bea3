"""User code named in a spec as 'package.module:function' (rule critics, SELF's teacher). The
module must be importable where it runs: installed, or on PYTHONPATH."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def load_callable(path: str) -> Callable:
    """The function at 'package.module:function'; ValueError saying why it cannot be imported."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{path!r} does not look like 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{path!r}: cannot import: {exc} (is its module installed or on PYTHONPATH?)") from None
    if not callable(fn):
        raise ValueError(f"{path!r}: {type(fn).__name__} is not callable")
    return fn
