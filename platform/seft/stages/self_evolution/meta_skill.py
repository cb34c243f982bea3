"""meta_skill: teach the policy to refine its own answers (SELF's meta-skill learning, EVOLVE's
activation). SFT on a meta-skill corpus of (response, feedback, refined response): each prompt
answered directly with the refined response, and each response turned into feedback and the
refined response. The corpus is `self_evolution.corpus`, or built from prepare's warm-up and
adaptive samples with the teacher `self_evolution.feedback`."""

from __future__ import annotations

from seft.callables import load_callable
from seft.errors import SeftError
from seft.refinement import MetaSkillRecord, corpus_from_samples, meta_skill_examples
from seft.records import RevisionSample, read_jsonl, write_jsonl
from seft.stages import Stage, TrainSpec, model_ref
from seft.storage import local_path


def training(spec):
    return spec.self_evolution.training or spec.policy_training


def stage(spec) -> Stage:
    evo = spec.self_evolution
    return Stage("meta_skill", run, reads=("self_evolution.corpus", "self_evolution.feedback"), inputs=("prepare",),
                 files=(evo.corpus,) if evo.corpus else (),  # an external file: its content is an input
                 trainings={"policy": TrainSpec(model_ref(spec, "policy"), "train.jsonl", training(spec))})


def teacher(path: str | None):
    """self_evolution.feedback, imported (the same 'package.module:function' form as a rule critic)."""
    if path is None:
        return None
    try:
        return load_callable(path)
    except ValueError as exc:
        raise SeftError(f"self_evolution.feedback: {exc}") from None


def run(ctx) -> dict:
    evo = ctx.spec.self_evolution
    if evo.corpus:
        corpus = list(read_jsonl(local_path(evo.corpus), MetaSkillRecord))
    else:
        samples = [s for split in ("warmup", "adaptive")
                   for s in read_jsonl(ctx.input("prepare") / f"{split}.jsonl", RevisionSample)]
        corpus = corpus_from_samples(samples, teacher(evo.feedback))
    write_jsonl(ctx.out / "corpus.jsonl", corpus)
    n = write_jsonl(ctx.out / "train.jsonl", meta_skill_examples(corpus))
    return {"corpus": len(corpus), "examples": n, "with_feedback": sum(r.feedback is not None for r in corpus)}
