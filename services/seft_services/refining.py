"""Inference-time self-refinement behind the Generator service (SELF, EVOLVE): answer, optionally
sample several answers and keep the critic's best, then let the model refine its own answer
round by round (seft.refinement's format). With keep_best a refinement the critic scores below
its input is dropped and the next round refines the input again."""

from __future__ import annotations

from dataclasses import dataclass

from seft.refinement import Step, best, final, parse_refinement, refine_prompt
from seft_services.backends import Completion
from seft_services.protocol import RefineParams, SamplingParams


@dataclass(frozen=True)
class Refined:
    steps: list[Step]       # the answer refined first, then each refinement
    prompt_tokens: int
    completion_tokens: int

    @property
    def text(self) -> str:
        return final(self.steps).text


def refine(generator, critic, prompts: list[list[dict]], params: SamplingParams, opts: RefineParams,
           stop) -> list[Refined]:
    n, tokens = len(prompts), [[0, 0] for _ in prompts]

    def generate(inputs: list[list[dict]], owners: list[int]) -> list[Completion]:
        outs = generator.generate(inputs, params, stop=lambda: [any(stop())] * len(inputs))
        for i, o in zip(owners, outs):
            tokens[i][0] += o.prompt_tokens
            tokens[i][1] += o.completion_tokens
        return outs

    def score(pairs: list[tuple[list[dict], str]]) -> list[float | None]:
        return list(critic.score(pairs)) if critic is not None else [None] * len(pairs)

    owners = [i for i in range(n) for _ in range(opts.samples)]
    answers = generate([prompts[i] for i in owners], owners)
    rewards = score([(prompts[i], a.text) for i, a in zip(owners, answers)])
    current = []
    for i in range(n):  # the critic's best of each prompt's samples
        drawn = [Step(answers[k].text, None, rewards[k]) for k in range(i * opts.samples, (i + 1) * opts.samples)]
        current.append(best(drawn))
    chains = [[step] for step in current]
    for _ in range(opts.rounds):
        outs = generate([refine_prompt(prompts[i], current[i].text) for i in range(n)], list(range(n)))
        parsed = [parse_refinement(o.text) for o in outs]
        rewards = score([(prompts[i], refined) for i, (_, refined) in enumerate(parsed)])
        for i, ((feedback, refined), reward) in enumerate(zip(parsed, rewards)):
            kept = not opts.keep_best or reward >= current[i].reward
            step = Step(refined, feedback, reward, kept)
            chains[i].append(step)
            if kept:
                current[i] = step
    return [Refined(chain, *t) for chain, t in zip(chains, tokens)]
