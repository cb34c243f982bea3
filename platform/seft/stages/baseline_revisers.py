"""baseline_revisers: the paper's baseline revisers (section 4.2), trained as the adaptive
reviser is: from the preliminary reviser, on the adaptive split, with `reviser_training` (or its
`baselines.training` entry).

- aligner: Aligner; always revises, its completion is the target alone.
- label: the label reviser of Appendix B, whose labels come from the original's rank alone:
  [Minor Revise] for ranks 1-3, [Major Revise] for ranks 4-6 and, of rank-0 originals (with
  `data.original_ranks` including 0), a `baselines.no_revise_share` [No Revise] and the rest
  [Major Revise], as the paper's "all other samples" reads.
The third baseline, the preliminary reviser, is the warmup stage's."""

from __future__ import annotations

from seft.chat import reviser_example
from seft.labelling import LABEL_TOKENS, Label, uniform
from seft.records import RevisionSample, messages, read_jsonl, write_jsonl
from seft.stages import Ref, Stage, TrainSpec


def stage(spec) -> Stage:
    return Stage("baseline_revisers", run, reads=("baselines.revisers", "baselines.no_revise_share"),
                 inputs=("prepare",), trainings={
        name: TrainSpec(Ref("warmup", "reviser"), f"{name}.jsonl",
                        getattr(spec.baselines.training, name) or spec.reviser_training,
                        add_tokens=LABEL_TOKENS if emits_labels(name) else ())
        for name in spec.baselines.revisers})


def emits_labels(name: str) -> bool:
    """Whether baseline reviser `name` answers label first (served so, trained with label tokens)."""
    return name == "label"


def rank_label(rank: int, seed: int, sample_id: str, no_revise_share: float) -> Label:
    """Appendix B's label of an original by its rank. The draw for rank 0 is a hash of (seed,
    sample id): the same samples get [No Revise] every run."""
    if rank == 0:
        return Label.NO if uniform(seed, f"no-revise\x00{sample_id}") < no_revise_share else Label.MAJOR
    return Label.MINOR if rank <= 3 else Label.MAJOR


def aligner_example(s: RevisionSample) -> dict:
    return reviser_example(messages(s.prompt), s.original, None, s.target)


def label_example(s: RevisionSample, seed: int, no_revise_share: float) -> dict:
    label = rank_label(s.rank, seed, s.id, no_revise_share)
    return reviser_example(messages(s.prompt), s.original, label, None if label is Label.NO else s.target)


def run(ctx) -> dict:
    spec = ctx.spec
    samples = list(read_jsonl(ctx.input("prepare") / "adaptive.jsonl", RevisionSample))
    build = {"aligner": aligner_example,
             "label": lambda s: label_example(s, spec.seed, spec.baselines.no_revise_share)}
    return {"examples": {name: write_jsonl(ctx.out / f"{name}.jsonl", (build[name](s) for s in samples))
                         for name in spec.baselines.revisers}}
