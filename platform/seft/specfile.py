"""Specs and jobs from outside: YAML files, `--set a.b=value` overrides, and validation errors
that name every bad field with its value (never a value that may be a credential)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from seft.errors import SpecError
from seft.spec import SECRETISH, PipelineSpec


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(spec)"
    value = error.get("input")
    if isinstance(value, dict) or SECRETISH.search(where):
        shown = ""  # never echo what may be a credential
    else:
        shown = f" (got {value!r})"
    return f"{where}: {error['msg']}{shown}"


def validate(model: type[BaseModel], data: Any, source: str):
    """model.model_validate(data), or a SpecError naming every bad field and its value."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = "\n  ".join(_describe(e) for e in exc.errors())
        raise SpecError(f"{source} is invalid:\n  {lines}") from None


def parse_spec(data: Any, source: str = "spec") -> PipelineSpec:
    return validate(PipelineSpec, data, source)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a raw spec mapping."""
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise SpecError(f"--set {item!r}: expected FIELD.PATH=VALUE")
        node = data
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {item!r}: {key!r} is not a mapping")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_yaml(path: str | Path, overrides: list[str] = ()) -> Any:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return apply_overrides(data, list(overrides)) if isinstance(data, dict) else data


def load_spec(path: str | Path, overrides: list[str] = ()) -> PipelineSpec:
    data = load_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("store"), str):
        data["store"] = {"uri": data["store"]}  # the shorthand, expanded so --set store.x=... works
    return parse_spec(apply_overrides(data, list(overrides)) if isinstance(data, dict) else data, str(path))
