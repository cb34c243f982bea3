"""How conversations become tokens: one place, shared by training and the services, so a model
sees at inference exactly the format it was trained on."""

from __future__ import annotations

from seft.labelling import Label

REVISE_INSTRUCTION = "Revise the response ."


def reviser_prompt(prompt: list[dict], original: str, instruction: str = REVISE_INSTRUCTION) -> list[dict]:
    """The reviser's input: the prompt and the original response in one user turn (a model that
    refines its own answers gets the same turn with its own instruction, seft.refinement)."""
    turns = "\n".join(f"{m['role']} : {m['content']}" for m in prompt)
    return [{"role": "user",
             "content": f"Prompt :\n{turns}\nResponse :\n{original}\n{instruction}"}]


def reviser_completion(label: Label | None, revision: str | None) -> str:
    """The reviser's output. Label first; a [No Revise] is the label alone."""
    if label is None:
        return revision or ""
    if label is Label.NO:
        return label.value
    return f"{label.value} {revision}"


def reviser_example(prompt: list[dict], original: str, label: Label | None, target: str | None) -> dict:
    """One reviser training example in TRL's conversational prompt-completion format."""
    return {"prompt": reviser_prompt(prompt, original),
            "completion": [{"role": "assistant", "content": reviser_completion(label, target)}]}


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def completion_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode_example(tokenizer, prompt: list[dict], completion: str, max_length: int) -> dict:
    """input_ids and labels with the loss on the completion's tokens only."""
    p_ids, c_ids = prompt_ids(tokenizer, prompt), completion_ids(tokenizer, completion)
    ids = (p_ids + c_ids)[:max_length]
    labels = ([-100] * len(p_ids) + c_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}
