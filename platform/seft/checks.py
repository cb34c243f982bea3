"""What `seft validate` (and `seft run`, before its first stage) checks beyond the spec's schema:
that what the spec names is there and loads. Model directories have a config, a tokenizer and
weights, and the ones that are trained are not quantized; data files parse, every row; critics'
callables import. Each problem names the spec field, the value and what to do. Locations in a
store (s3://) are checked where the stage reads them, not here."""

from __future__ import annotations

import json
from pathlib import Path

from seft.callables import load_callable
from seft.errors import SeftError
from seft.storage import S3, local_path

GGUF_HINT = "for a GGUF file, `python -m seft.gguf OUT --gguf FILE` writes a plain one"


def _local(location: str) -> Path | None:
    return None if location.startswith(S3) else local_path(location)


def model_problems(field: str, location: str, trained: bool) -> list[str]:
    """A model directory's problems. `trained`: a stage fine-tunes it (quantized weights cannot be)."""
    path = _local(location)
    if path is None:
        return []
    where = f"{field}: {location!r}"
    if not path.is_dir():
        return [f"{where} is not a directory (an HF model directory: config.json, tokenizer, weights)"]
    if not (path / "config.json").is_file():
        return [f"{where} has no config.json: not an HF model directory ({GGUF_HINT})"]
    problems = []
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"{where}: config.json does not parse: {exc}"]
    quant = config.get("quantization_config")
    if trained and quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else "?"
        problems.append(f"{where} is quantized (config.json has quantization_config, quant_method {method!r}); "
                        f"the Trainer cannot fine-tune quantized weights: give a full-precision model ({GGUF_HINT}, "
                        "or load, dequantize and save_pretrained without quantization_config)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        problems.append(f"{where} has no weights (*.safetensors)")
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - any reason a tokenizer does not load is the user's to see
        problems.append(f"{where}: its tokenizer does not load: {type(exc).__name__}: {exc}")
    return problems


def data_problems(field: str, location: str, kind: str) -> list[str]:
    """kind: preference | prompts. Reads every row, so a bad one is found before any stage runs."""
    from seft.preference import read_preference, read_prompts

    path = _local(location)
    if path is None:
        return []
    if not path.exists():
        return [f"{field}: {location!r} does not exist"]
    try:
        rows = sum(1 for _ in (read_preference if kind == "preference" else read_prompts)(path))
    except SeftError as exc:
        return [f"{field}: {exc}"]
    return [] if rows else [f"{field}: {location!r} has no rows"]


def callable_problems(field: str, path: str | None) -> list[str]:
    if path is None:
        return []
    try:
        load_callable(path)
    except ValueError as exc:
        return [f"{field}: {exc}"]
    return []


def problems(spec) -> list[str]:
    """Every problem with the spec's inputs (none when bootstrap makes them)."""
    found: list[str] = []
    trained = {"policy": True, "reviser_base": True, "generator": False}  # the generator is only served
    for role, is_trained in trained.items():
        location = getattr(spec.models, role)
        if location:
            found += model_problems(f"models.{role}", location, is_trained)
    for field, location, kind in (("data.preference", spec.data.preference, "preference"),
                                  ("data.prompts", spec.data.prompts, "prompts"),
                                  ("ranking.prompts", spec.ranking and spec.ranking.prompts, "prompts")):
        if location:
            found += data_problems(field, location, kind)
    for i, critic in enumerate(spec.critics):
        found += callable_problems(f"critics[{i}].callable", critic.callable)
        if critic.model:
            found += model_problems(f"critics[{i}].model", critic.model, trained=False)
    if spec.self_evolution is not None:
        found += callable_problems("self_evolution.feedback", spec.self_evolution.feedback)
    return found
