"""Self-refinement, for the SELF and EVOLVE recipes: the format in which one model refines its own
answer (optionally giving itself feedback first), and the data builders and filters that turn
refinement chains into training data.

A chain is a prompt's answers in the order they were made: the direct answer, then each
refinement of the one before. Its rewards (a critic's) come with it where known."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field, field_validator

from seft.chat import reviser_prompt
from seft.records import Conversation, Record, RevisionSample, _nonempty

REFINE_INSTRUCTION = "Give feedback and refine the response ."
FEEDBACK = "Feedback :"
REFINEMENT = "Refinement :"


def refine_prompt(prompt: list[dict], response: str) -> list[dict]:
    """The model's input when it refines `response`: the prompt and the response in one user turn."""
    return reviser_prompt(prompt, response, REFINE_INSTRUCTION)


def refine_completion(feedback: str | None, refined: str) -> str:
    """SELF's output: feedback first, then the refinement; without feedback (EVOLVE) the
    refinement alone."""
    return refined if feedback is None else f"{FEEDBACK} {feedback} {REFINEMENT} {refined}"


def parse_refinement(text: str) -> tuple[str | None, str]:
    """(feedback, refined) from a model's output in either form. Output that starts the feedback
    but never reaches the refinement is feedback alone and an empty refinement."""
    text = text.strip()
    if not text.startswith(FEEDBACK):
        return None, text
    feedback, marker, refined = text[len(FEEDBACK):].partition(REFINEMENT)
    return feedback.strip(), refined.strip() if marker else ""


def format_words() -> list[str]:
    """The words of the refinement format itself, for a word-level tokenizer (seft.tinymodel)."""
    text = refine_prompt([{"role": "user", "content": "x"}], "x")[0]["content"] + " " + refine_completion("x", "x")
    return text.split()


class MetaSkillRecord(Record):
    """One line of a meta-skill corpus (SELF): a response to a prompt, natural-language feedback
    on it (optional: EVOLVE refines without), and the refined response."""

    id: str = Field(min_length=1)
    prompt: Conversation
    response: str
    feedback: str | None = None
    refined: str

    _prompt = field_validator("prompt")(_nonempty)


def meta_skill_examples(corpus: list[MetaSkillRecord]) -> list[dict]:
    """SFT examples (TRL's conversational prompt-completion format) that teach both skills: each
    prompt answered directly with its refined response (once per prompt), and each response
    turned into feedback + refined response."""
    direct: dict[str, dict] = {}
    refine = []
    for rec in corpus:
        prompt = [m.model_dump() for m in rec.prompt]
        direct.setdefault(json.dumps(prompt, sort_keys=True), sft_example(prompt, rec.refined))
        refine.append(sft_example(refine_prompt(prompt, rec.response), refine_completion(rec.feedback, rec.refined)))
    return list(direct.values()) + refine


def sft_example(prompt: list[dict], completion: str) -> dict:
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}]}


def corpus_from_samples(samples: list[RevisionSample], feedback: Callable[[list[dict], str], str] | None
                        ) -> list[MetaSkillRecord]:
    """A meta-skill corpus from prepare's (original, target) samples: each original refined into
    the target, and the target itself left as it is (a right answer needs no change), with a
    teacher's feedback(prompt, response) (a rule, a stronger model) when given."""
    out = []
    for s in samples:
        prompt = [m.model_dump() for m in s.prompt]
        for kind, response in (("original", s.original), ("target", s.target)):
            out.append(MetaSkillRecord(id=f"{s.id}-{kind}", prompt=prompt, response=response,
                                       feedback=feedback(prompt, response) if feedback else None, refined=s.target))
    return out


@dataclass(frozen=True)
class Step:
    """One answer of a chain: the text, the feedback the model gave on the answer before it
    (None for the direct answer), and its reward when a critic scored it."""

    text: str
    feedback: str | None = None
    reward: float | None = None
    kept: bool = True  # False: the critic scored it below its input and the chain went on without it


def best(chain: list[Step]) -> Step:
    """The highest-rewarded answer; the earliest one on a tie (no change without a gain)."""
    return max(chain, key=lambda s: s.reward if s.reward is not None else float("-inf"))


def final(chain: list[Step]) -> Step:
    """The answer a chain ends with: its last kept step."""
    return [s for s in chain if s.kept][-1]


def refinements(chain: list[Step]) -> list[tuple[Step, Step]]:
    """(input, refinement) for each refinement of a chain. A refinement refines the last kept
    answer before it: after a dropped one, the next round refined the same input again."""
    out, current = [], chain[0]
    for step in chain[1:]:
        out.append((current, step))
        if step.kept:
            current = step
    return out


def keep_by_critic(chain: list[Step], min_reward: float) -> Step | None:
    """SELF's filter by a critic: the chain's best answer if it reaches min_reward."""
    top = best(chain)
    return top if top.reward is not None and top.reward >= min_reward else None


def keep_by_self(chain: list[Step], accept: str) -> Step | None:
    """SELF's filter by the model's own judgement: the last answer whose next feedback (the
    model's verdict on it) is `accept`, e.g. "correct"."""
    kept = None
    for before, after in refinements(chain):
        if after.feedback is not None and after.feedback.strip() == accept:
            kept = before
    return kept


def refinement_pairs(prompt: list[dict], chain: list[Step]) -> list[dict]:
    """EVOLVE's preference pairs from a chain (TRL's conversational {prompt, chosen, rejected}),
    one per refinement the critic scored differently from its input, on the prompt that asked for
    it (see refinements()): a refinement that scored higher is chosen over leaving the input unchanged; one that
    scored lower is rejected in favour of the unchanged input. Without rewards, no pairs."""
    pairs = []
    for before, after in refinements(chain):
        if before.reward is None or after.reward is None or before.reward == after.reward:
            continue
        refined = [{"role": "assistant", "content": refine_completion(after.feedback, after.text)}]
        unchanged = [{"role": "assistant", "content": refine_completion(None, before.text)}]
        better = after.reward > before.reward
        pairs.append({"prompt": refine_prompt(prompt, before.text), "chosen": refined if better else unchanged,
                      "rejected": unchanged if better else refined})
    return pairs


def direct_pair(prompt: list[dict], chain: list[Step]) -> dict | None:
    """The chain's best answer chosen over the direct answer, as a direct answer to the prompt
    (EVOLVE's reconstructed dataset, as a preference pair), if it scored higher."""
    top, first = best(chain), chain[0]
    if top is first or top.reward is None or first.reward is None or top.reward <= first.reward:
        return None
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": top.text}],
            "rejected": [{"role": "assistant", "content": first.text}]}


def kept_answer(chain: list[Step], how: str, min_reward: float, accept: str) -> Step | None:
    """The answer a self-evolution round keeps from a chain, by filter `how`: critic | self | none
    (the chain's final answer)."""
    if how == "critic":
        return keep_by_critic(chain, min_reward)
    if how == "self":
        return keep_by_self(chain, accept)
    return final(chain)


def round_examples(prompt: list[dict], chain: list[Step], kept: Step | None, reconstruct: bool) -> list[dict]:
    """A round's SFT examples from one chain: the kept answer as a direct answer (reconstruct),
    and each refinement the critic scored above its input, as a refinement of that input."""
    out = [sft_example(prompt, kept.text)] if reconstruct and kept is not None else []
    for before, after in refinements(chain):
        if before.reward is not None and after.reward is not None and after.reward > before.reward:
            out.append(sft_example(refine_prompt(prompt, before.text), refine_completion(after.feedback, after.text)))
    return out


def round_pairs(prompt: list[dict], chain: list[Step], reconstruct: bool) -> list[dict]:
    """A round's DPO pairs from one chain: its refinement pairs, and (reconstruct) its best answer
    over its direct answer."""
    pair = direct_pair(prompt, chain) if reconstruct else None
    return refinement_pairs(prompt, chain) + ([pair] if pair else [])
