"""meta_skill: teach the policy to refine its own answers (SELF's meta-skill learning, EVOLVE's
activation). SFT on a meta-skill corpus of (response, feedback, refined response): each prompt
answered directly with the refined response, and each response turned into feedback and the
refined response. The corpus is `self_evolution.corpus`, or built from prepare's warm-up and
adaptive samples with the teacher `self_evolution.feedback`."""

from __future__ import annotations

from seft.errors import SeftError
from seft.refinement import MetaSkillRecord, corpus_from_samples, meta_skill_examples
from seft.records import RevisionSample, read_jsonl, write_jsonl
from seft.stages import TrainSpec, model_ref
from seft.storage import sha256_file

NAME = "meta_skill"


def training(spec):
    return spec.self_evolution.training or spec.policy_training


def inputs(spec) -> tuple[str, ...]:
    return ("prepare",) + (("bootstrap",) if spec.bootstrap else ())


def services(spec) -> dict:
    return {}


def trainings(spec) -> dict[str, TrainSpec]:
    return {"policy": TrainSpec(model_ref(spec, "policy"), "train.jsonl", training(spec))}


def params(spec) -> dict:
    evo = spec.self_evolution
    out = {"training": training(spec).model_dump(), "feedback": evo.feedback, "seed": spec.seed,
           "policy": None if spec.bootstrap else spec.models.policy}
    if evo.corpus:  # an external file: its content is an input
        out["corpus"] = sha256_file(evo.corpus.removeprefix("file://"))
    return out


def teacher(spec):
    """self_evolution.feedback, imported (the same 'package.module:function' form as a rule critic)."""
    if spec.self_evolution.feedback is None:
        return None
    from seft_services.backends.critics import RuleCritic

    try:
        return RuleCritic(spec.self_evolution.feedback).fn
    except ValueError as exc:
        raise SeftError(f"self_evolution.feedback: {exc}") from None


def run(ctx) -> dict:
    evo = ctx.spec.self_evolution
    if evo.corpus:
        corpus = list(read_jsonl(evo.corpus.removeprefix("file://"), MetaSkillRecord))
    else:
        samples = [s for split in ("warmup", "adaptive")
                   for s in read_jsonl(ctx.input("prepare") / f"{split}.jsonl", RevisionSample)]
        corpus = corpus_from_samples(samples, teacher(ctx.spec))
    write_jsonl(ctx.out / "corpus.jsonl", corpus)
    n = write_jsonl(ctx.out / "train.jsonl", meta_skill_examples(corpus))
    ctx.train()
    return {"corpus": len(corpus), "examples": n, "with_feedback": sum(r.feedback is not None for r in corpus)}
