"""label: the preliminary reviser revises every adaptive-split original; the labeller scores
original and revision with the critic and labels each by its benefit (alpha / beta / p: the
paper's section 3.2, seft.labelling)."""

from __future__ import annotations

from collections import Counter

from seft.client import LabellerClient, ReviserClient
from seft.labelling import Label, Rule
from seft.records import RevisionSample, messages, read_jsonl, write_jsonl
from seft.stages import Ref, ServiceSpec, Stage


def stage(spec) -> Stage:
    return Stage("label", run, reads=("labelling", "revision"), inputs=("prepare",), services={
        "reviser": ServiceSpec("reviser", Ref("warmup", "reviser"), label_first=False),
        "labeller": ServiceSpec("labeller", critic=spec.labelling_critic)})


def run(ctx) -> dict:
    spec, cfg = ctx.spec, ctx.spec.labelling
    samples = list(read_jsonl(ctx.input("prepare") / "adaptive.jsonl", RevisionSample))
    rule = Rule(cfg.alpha, cfg.beta, cfg.p, Label.from_name(cfg.relabel_to), spec.seed)
    items = [(messages(s.prompt), s.original) for s in samples]
    with ctx.services() as ep:
        with (ctx.progress("revising (preliminary reviser)", len(items)) as advance,
              ReviserClient(ep["reviser"], batch_size=spec.services.batch_size) as reviser):
            revisions = reviser.revise(items, spec.revision, seed=spec.seed, on_batch=advance)
        with (ctx.progress("labelling", len(items)) as advance,
              LabellerClient(ep["labeller"], batch_size=spec.services.batch_size) as labeller):
            pairs = [(s.id, p, o, r.text, s.metadata) for s, (p, o), r in zip(samples, items, revisions)]
            labels = labeller.label(pairs, rule, on_batch=advance)
    rows = [{**s.model_dump(mode="json"), "preliminary_revision": r.text, "reward_original": lb.reward_original,
             "reward_revised": lb.reward_revised, "benefit": lb.benefit, "label": lb.label.value,
             "relabelled": lb.relabelled} for s, r, lb in zip(samples, revisions, labels)]
    write_jsonl(ctx.out / "labelled.jsonl", rows)
    shares = Counter(lb.label.short for lb in labels)
    return {"samples": len(rows), "labels": {k: shares[k] / len(rows) for k in ("major", "minor", "no")},
            "mean_benefit": sum(lb.benefit for lb in labels) / len(labels)}
