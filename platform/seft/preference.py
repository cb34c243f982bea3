"""A user's data in the shapes people have, read into PreferenceRecord / PromptRecord.

Files: JSONL (read line by line, so an error names the line), Parquet, or a directory written by
HF datasets' `save_to_disk` (both read with `datasets`; an error names the row, counted from 0).

A preference row is one of (`prompt` is a string or a conversation, `id` is optional):
- **ranked**: `responses: [{content, rank}, ...]`, two or more, smaller rank is better (Nectar's
  1..7 work as they are);
- **scored**: `responses: [{content, score}, ...]`, higher score is better (UltraFeedback's);
- **pairwise** (TRL): `chosen` and `rejected`, strings or conversations ending in the assistant's
  answer; without `prompt`, the conversations' shared start is the prompt (TRL's implicit prompt).
Either way the responses become ranks 0 (best), 1, 2, ... by their order, so a pair is ranks 0
and 1 and evaluation reports each rank position. A prompt row is `prompt` (and an optional `id`).
An optional `metadata` mapping (e.g. `{"answer": "42"}` of a verifiable task) reaches rule critics
as keyword arguments, the way TRL passes a dataset's columns to reward functions. Other columns are
ignored, so a dataset's own extra columns need no cleaning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from seft.errors import SeftError
from seft.records import ChatMessage, Conversation, PreferenceRecord, PromptRecord, RankedResponse, numbered_jsonl


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    prompt: str | Conversation | None = None
    metadata: dict[str, Any] | None = None

    def conversation(self) -> Conversation:
        if isinstance(self.prompt, str):
            return [ChatMessage(role="user", content=self.prompt)]
        return self.prompt


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: str
    rank: int | None = None
    score: float | None = Field(None, allow_inf_nan=False)


class _PreferenceRow(_Row):
    responses: list[_Response] | None = None
    chosen: str | Conversation | None = None
    rejected: str | Conversation | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> "_PreferenceRow":
        pair = self.chosen is not None or self.rejected is not None
        if self.responses is not None and pair:
            raise ValueError("has both responses and chosen/rejected: use one shape")
        if pair:
            if self.chosen is None or self.rejected is None:
                raise ValueError("a pairwise row needs both chosen and rejected")
            self._implicit_prompt()
            return self
        if self.responses is None:
            raise ValueError("needs responses (ranked or scored) or chosen and rejected")
        if self.prompt is None:
            raise ValueError("needs a prompt")
        if len(self.responses) < 2:
            raise ValueError(f"responses: needs at least two, got {len(self.responses)}")
        keys = {("rank" if r.rank is not None else "") + ("score" if r.score is not None else "")
                for r in self.responses}
        if keys not in ({"rank"}, {"score"}):
            raise ValueError("responses: every response needs a rank, or every response a score (not both)")
        ranks = [r.rank for r in self.responses]
        if "rank" in keys and len(set(ranks)) != len(ranks):
            raise ValueError(f"responses: ranks must be distinct, got {ranks}")
        return self

    def _implicit_prompt(self) -> None:
        """TRL's implicit prompt: chosen and rejected are whole conversations sharing their start."""
        if self.prompt is not None:
            return
        if isinstance(self.chosen, str) or isinstance(self.rejected, str):
            raise ValueError("a pairwise row with plain-text chosen/rejected needs a prompt")
        shared = 0
        while (shared < min(len(self.chosen), len(self.rejected)) - 1
               and self.chosen[shared] == self.rejected[shared]):
            shared += 1
        self.prompt, self.chosen, self.rejected = self.chosen[:shared], self.chosen[shared:], self.rejected[shared:]

    def ordered(self) -> list[str]:
        """Response texts, best first."""
        if self.responses is None:
            return [_answer(self.chosen, "chosen"), _answer(self.rejected, "rejected")]
        if self.responses[0].rank is not None:
            return [r.content for r in sorted(self.responses, key=lambda r: r.rank)]
        return [r.content for r in sorted(self.responses, key=lambda r: -r.score)]  # stable: ties keep order


def _answer(value: str | Conversation, field: str) -> str:
    if isinstance(value, str):
        return value
    if len(value) != 1 or value[0].role != "assistant":
        raise ValueError(f"{field}: must be one assistant message after the prompt, got roles "
                         f"{[m.role for m in value]}")
    return value[0].content


def _rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) for each row of a JSONL file, a Parquet file or a save_to_disk directory."""
    if path.is_dir() or path.suffix == ".parquet":
        yield from _hf_rows(path)
        return
    for lineno, data in numbered_jsonl(path):
        if not isinstance(data, dict):
            raise SeftError(f"{path}:{lineno}: a row must be a JSON object, got {type(data).__name__}")
        yield f"{path}:{lineno}", data


def _hf_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import datasets

    datasets.disable_progress_bars()
    try:
        if path.is_dir():
            data = datasets.load_from_disk(str(path))
            if isinstance(data, datasets.DatasetDict):
                if list(data) != ["train"]:
                    raise SeftError(f"{path}: a DatasetDict with splits {list(data)}: save the one split to use")
                data = data["train"]
        else:
            data = datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
    except (OSError, ValueError) as exc:
        raise SeftError(f"{path}: cannot read as a dataset: {exc}") from None
    for i, row in enumerate(data):
        # Columns are the union of every row's keys: a key a row lacks comes back as None.
        yield f"{path}: row {i}", {k: v for k, v in row.items() if v is not None}


def _problem(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    err = exc.errors()[0]
    field, msg = ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")
    return f"{field}: {msg} (got {err['input']!r})" if field else msg  # a row-level message names its fields


def _record(where: str, make, *args):
    """make(*args), or a SeftError naming the row and the field."""
    try:
        return make(*args)
    except (ValueError, ValidationError) as exc:  # pydantic's ValidationError is a ValueError
        raise SeftError(f"{where}: {_problem(exc)}") from None


def _row_id(row: _Row, i: int) -> str:
    return str(row.id) if row.id is not None else f"row-{i}"


def read_preference(path: str | Path) -> Iterator[PreferenceRecord]:
    """The preference rows of `path`, each as ranked responses 0 (best) .. n-1."""
    def make(i: int, data: dict) -> PreferenceRecord:
        row = _PreferenceRow.model_validate(data)
        return PreferenceRecord(id=_row_id(row, i), prompt=row.conversation(), metadata=row.metadata,
                                responses=[RankedResponse(rank=k, content=t) for k, t in enumerate(row.ordered())])

    for i, (where, data) in enumerate(_rows(Path(path))):
        yield _record(where, make, i, data)


def read_prompts(path: str | Path) -> Iterator[PromptRecord]:
    def make(i: int, data: dict) -> PromptRecord:
        row = _Row.model_validate(data)
        if row.prompt is None:
            raise ValueError("prompt: missing")
        return PromptRecord(id=_row_id(row, i), prompt=row.conversation(), metadata=row.metadata)

    for i, (where, data) in enumerate(_rows(Path(path))):
        yield _record(where, make, i, data)
