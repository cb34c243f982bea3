"""JSONL records: chat-format prompts (`messages`, as TRL and HF datasets use), one per line.

Readers stream and name the file and line of a bad record; writers are atomic (a temporary
file renamed into place), so a crash never leaves half a dataset behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from seft.errors import SeftError

T = TypeVar("T", bound=BaseModel)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(Record):
    role: Literal["system", "user", "assistant"]
    content: str


Conversation = list[ChatMessage]


def _nonempty(prompt: Conversation) -> Conversation:
    if not prompt or not any(m.role == "user" and m.content.strip() for m in prompt):
        raise ValueError("prompt needs at least one non-empty user message")
    return prompt


class RankedResponse(Record):
    rank: int = Field(ge=0)
    content: str


class PreferenceRecord(Record):
    """A prompt with responses ranked 0 (best), 1, ... (seft.preference reads the shapes people
    have into this one). `metadata` reaches rule critics as keyword arguments (e.g. a verifiable
task's answer)."""

    id: str = Field(min_length=1)
    prompt: Conversation
    responses: list[RankedResponse]
    metadata: dict[str, Any] | None = None

    _prompt = field_validator("prompt")(_nonempty)

    @field_validator("responses")
    @classmethod
    def _ranks(cls, v: list[RankedResponse]) -> list[RankedResponse]:
        ranks = [r.rank for r in v]
        if len(set(ranks)) != len(ranks) or 0 not in ranks or len(ranks) < 2:
            raise ValueError(f"responses need distinct ranks including 0 and at least one other, got {ranks}")
        return sorted(v, key=lambda r: r.rank)


class PromptRecord(Record):
    id: str = Field(min_length=1)
    prompt: Conversation
    metadata: dict[str, Any] | None = None

    _prompt = field_validator("prompt")(_nonempty)


class RevisionSample(Record):
    """A reviser example: revise `original` (of rank `rank`) towards `target`."""

    id: str
    prompt: Conversation
    original: str
    rank: int
    target: str
    metadata: dict[str, Any] | None = None  # for rule critics


class SFTExample(Record):
    """TRL's conversational prompt-completion format."""

    prompt: Conversation
    completion: Conversation


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank line, for errors that name the line."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise SeftError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise SeftError(f"{path}:{lineno}: not valid JSON: {exc.msg}") from None


def read_jsonl(path: str | Path, model: type[T] | None = None) -> Iterator[T | dict]:
    for lineno, data in numbered_jsonl(path):
        if model is None:
            yield data
            continue
        try:
            yield model.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(record)"
            raise SeftError(f"{path}:{lineno}: {where}: {err['msg']} (got {err.get('input')!r})") from None


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict]) -> int:
    """Write records atomically; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for rec in records:
                data = rec.model_dump(mode="json") if isinstance(rec, BaseModel) else rec
                out.write(json.dumps(data, ensure_ascii=False) + "\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def count_lines(path: str | Path) -> int:
    with Path(path).open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def messages(conv: Conversation) -> list[dict]:
    return [m.model_dump() for m in conv]
