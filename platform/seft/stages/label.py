"""label: the preliminary reviser revises every adaptive-split original; the labeller scores
original and revision with the critic and labels each by its benefit (alpha / beta / p: the
paper's section 3.2, seft.labelling). Its summary has the label shares overall and per original
rank, and a warning when one label holds more than LOPSIDED of them: the adaptive reviser then
has little to learn but that label (README, "Label health")."""

from __future__ import annotations

from seft.client import LabellerClient, ReviserClient
from seft.labelling import Label, Rule
from seft.metrics import dominant_label, label_shares
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
    shares = label_shares([lb.label.short for lb in labels])
    by_rank = {str(rank): label_shares([lb.label.short for s, lb in zip(samples, labels) if s.rank == rank])
               for rank in sorted({s.rank for s in samples})}
    summary = {"samples": len(rows), "labels": shares, "labels_by_rank": by_rank,
               "mean_benefit": sum(lb.benefit for lb in labels) / len(labels)}
    label, share = dominant_label(shares)
    if share > LOPSIDED:
        summary["warnings"] = [lopsided_labels(label, share, cfg)]
    return summary


LOPSIDED = 0.85  # one label's share of the training labels above which the label stage warns


def lopsided_labels(label: str, share: float, cfg) -> str:
    move = {"no": "lower alpha (and beta) so smaller benefits count as a revision, or lower p so more "
                  "[Minor]/[No Revise] labels become [Major Revise]; a preliminary reviser that improves more "
                  "(more warm-up steps or a higher learning rate) raises the benefits",
            "major": "raise beta so only large benefits are [Major Revise], raise p so fewer labels are "
                     "relabelled, or include better originals (data.original_ranks with rank 0 or 1)",
            "minor": "spread alpha and beta apart, or move them so fewer benefits fall between them"}[label]
    return (f"{share:.0%} of the training labels are [{label.title()} Revise] (alpha {cfg.alpha}, beta "
            f"{cfg.beta}, p {cfg.p}): the adaptive reviser will learn little else; to balance them, {move}")
