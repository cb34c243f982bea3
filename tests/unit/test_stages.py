"""The shape every stage has: one declaration per module, named after it; reads of undeclared
inputs and settings fail; the fingerprint follows what the stage declares; the core's imports."""

from __future__ import annotations

import ast

import pytest
from rich.console import Console

from seft.errors import SeftError
from seft.executors.local import Context, run_pipeline
from seft.recipes import seft as seft_recipe
from seft.recipes import self_evolution, stages_for
from seft.specfile import load_spec
from seft.stages import Stage, TrainSpec
from seft.stages.self_evolution import round as rounds
from seft.storage import open_store

from helpers import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_each_stage_is_declared_by_the_module_of_its_name(example):
    spec = load_spec(example)
    recipe = seft_recipe if spec.recipe == "seft" else self_evolution
    for mod in recipe.modules(spec):
        assert mod.stage(spec).name == mod.__name__.rpartition(".")[2]
        # the old shape's six functions are gone: a declaration says it all
        assert not {"inputs", "services", "trainings", "params", "NAME"} & set(vars(mod)), mod.__name__
    if spec.recipe != "seft":
        assert [rounds.stage(spec, k).name for k in (1, 2)] == ["round_1", "round_2"]
    names = [s.name for s in stages_for(spec)]
    assert len(names) == len(set(names))
    for i, st in enumerate(stages_for(spec)):  # every input is an earlier stage
        assert set(st.needs) <= set(names[:i]), (st.name, st.needs)


def test_a_stage_needs_the_stages_its_models_come_from():
    spec = load_spec(ROOT / "examples" / "quickstart.yaml")
    stages = {s.name: s for s in stages_for(spec)}
    assert stages["adapt"].inputs == ("label",) and set(stages["adapt"].needs) == {"label", "warmup"}
    assert "bootstrap" in stages["internal"].needs  # the initial policy, named by a Ref only
    own = Stage("x", lambda ctx: {}, trainings={"m": TrainSpec(stages["adapt"].trainings["reviser"].model, "d", None)})
    assert own.needs == ("warmup",)


def _context(tmp_path, stage: Stage) -> Context:
    spec = load_spec(ROOT / "examples" / "quickstart.yaml")
    store = open_store(f"file://{tmp_path}/runs", spec.name)
    return Context(spec, store, tmp_path, stage, tmp_path / "out", Console(quiet=True))


def test_reading_an_undeclared_input_fails_naming_both_stages(tmp_path):
    ctx = _context(tmp_path, Stage("label", lambda ctx: {}, inputs=("prepare",)))
    with pytest.raises(SeftError) as err:
        ctx.input("adapt")
    assert "stage 'label' reads the artifact of stage 'adapt'" in str(err.value)
    assert "its inputs: prepare" in str(err.value)


def test_reading_an_undeclared_setting_fails_and_declared_ones_read_through(tmp_path):
    ctx = _context(tmp_path, Stage("label", lambda ctx: {}, reads=("labelling", "evaluation.sampling")))
    assert ctx.spec.labelling.alpha == 0.05 and ctx.spec.evaluation.sampling.temperature == 1.0
    assert ctx.spec.seed == 0 and ctx.spec.services.batch_size > 0  # in every fingerprint / no effect on output
    for read in (lambda s: s.generation, lambda s: s.evaluation.judge, lambda s: s.reviser_training.learning_rate):
        with pytest.raises(SeftError, match=r"stage 'label' reads spec field '[a-z_.]+' without declaring it"):
            read(ctx.spec)


def test_the_fingerprint_follows_declared_settings_only():
    base = load_spec(ROOT / "examples" / "quickstart.yaml")
    label = next(s for s in stages_for(base) if s.name == "label")
    alpha = load_spec(ROOT / "examples" / "quickstart.yaml", ["labelling.alpha=0.2"])
    lr = load_spec(ROOT / "examples" / "quickstart.yaml", ["policy_training.learning_rate=0.1"])
    assert label.params(alpha) != label.params(base) and label.params(lr) == label.params(base)
    internal = {s.name: s for s in stages_for(lr)}["internal"]  # a training's settings come with it
    assert internal.params(lr) != next(s for s in stages_for(base) if s.name == "internal").params(base)


def test_evaluate_reruns_when_the_revisers_or_the_policies_decoding_changes():
    """evaluate revises as the pipeline does (`revision`) and has the policies answer as
    `evaluation.sampling` says: a change to either makes a new evaluation."""
    def evaluate(*sets):
        spec = load_spec(ROOT / "examples" / "quickstart.yaml", list(sets))
        return next(s for s in stages_for(spec) if s.name == "evaluate").params(spec)
    base = evaluate()
    assert evaluate("revision.temperature=0.5") != base
    assert evaluate("evaluation.sampling.temperature=0.5") != base
    assert evaluate("generation.temperature=0.5") == base  # evolution's drafts: not evaluate's


def test_a_stage_that_reads_an_undeclared_input_fails_in_a_run(tmp_path):
    spec = load_spec(ROOT / "examples" / "quickstart.yaml", [f"store=file://{tmp_path}/runs"])

    def sneaky(ctx):
        ctx.input("first")
        return {}

    first = Stage("first", lambda ctx: (ctx.out / "a.txt").write_text("a") and {})
    second = Stage("second", sneaky)
    with pytest.raises(SeftError, match="stage 'second' reads the artifact of stage 'first'"):
        run_pipeline(spec, [first, second], Console(quiet=True), workdir=tmp_path / "runs")
    store = open_store(f"file://{tmp_path}/runs", spec.name)
    assert store.manifest("first") is not None and store.manifest("second") is None


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_core_never_imports_the_services_or_the_operator():
    """Layers: seft_services and seft_operator build on seft, never the other way round (their
    commands reach `seft` through entry points)."""
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] in
                                                  ("seft_services", "seft_operator"))
                 for p in (ROOT / "platform" / "seft").rglob("*.py")}
    assert {p: m for p, m in offenders.items() if m} == {}
    services = {m for p in (ROOT / "services").rglob("*.py") for m in _imports(p)}
    assert not any(m.startswith("seft_operator") for m in services)


def test_no_source_file_sends_the_reader_outside_the_repository():
    outside = [str(p.relative_to(ROOT)) for d in ("platform", "services", "operators")
               for p in (ROOT / d).rglob("*.py") if "DESIGN.md" in p.read_text() or "NOTES.md" in p.read_text()]
    assert outside == []


def test_a_training_failure_is_the_workers_exception_not_the_launchers():
    from seft.train import failure

    log = "\n".join([
        "[rank0]: Traceback (most recent call last):",
        '[rank0]:   File "a.py", line 1, in <module>',
        "[rank0]: KeyError: 'x'",
        "",
        "[rank0]: The above exception was the direct cause of the following exception:",
        "",
        "[rank0]: Traceback (most recent call last):",
        '[rank0]:   File "train.py", line 7, in train',
        "[rank0]:     model = load(path)",
        '[rank0]:   File "hub.py", line 9, in load',
        "[rank0]: OSError: no model at /m",
        "E1130 failed (exitcode: 1) local_rank: 0",
        "Traceback (most recent call last):",
        '  File "run.py", line 1032, in <module>',
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
    ])
    assert failure(log) == 'OSError: no model at /m\nlast frames:\n  File "train.py", line 7, in train\n' \
                           '  File "hub.py", line 9, in load'
    assert failure("x\nerror: d.jsonl: records need 'prompt'\n") == "error: d.jsonl: records need 'prompt'"
    assert failure("loss 0.1\nKilled") is None


def test_a_loss_tracker_that_is_not_installed_is_named_before_training(tmp_path):
    from seft.train import TrainJob
    from seft.train.__main__ import training_arguments

    job = TrainJob(model="m", data="d", output_dir=str(tmp_path), report_to=["tensorboard", "mlflow"],
                   batch_size=8, per_device_batch_size=8, deepspeed="none")
    with pytest.raises(SeftError, match=r"report_to: 'mlflow' is not installed \(pip install mlflow\)"):
        training_arguments(job, 1, None, use_cpu=True, checkpoints=tmp_path / "ck", examples=8)
    args = training_arguments(job.model_copy(update={"report_to": ["tensorboard"]}), 1, None, use_cpu=True,
                              checkpoints=tmp_path / "ck", examples=8)
    assert args.report_to == ["tensorboard"] and args.save_strategy == "no"


def test_warmup_stable_decay_holds_the_rate_then_decays_it_over_the_last_share_of_the_steps(tmp_path):
    """The schedule the HF Trainer builds from these arguments (as Trainer.create_scheduler does),
    for 15 epochs of 1000 examples in batches of 64: 16 steps an epoch, 240 in all."""
    import torch
    from transformers import get_scheduler

    from seft.train import TrainJob
    from seft.train.__main__ import training_arguments

    job = TrainJob(model="m", data="d", output_dir=str(tmp_path), lr_scheduler="warmup_stable_decay", epochs=15,
                   learning_rate=2e-3, warmup_ratio=0.05, decay_ratio=0.2, batch_size=64, per_device_batch_size=64,
                   deepspeed="none", report_to=[])
    args = training_arguments(job, 1, None, use_cpu=True, checkpoints=tmp_path / "ck", examples=1000)
    assert args.lr_scheduler_kwargs == {"num_decay_steps": 48}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=job.learning_rate)
    schedule = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(240),
                             num_training_steps=240, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    rates = []
    for _ in range(240):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates[0] < rates[11] < rates[12] == rates[191] == 2e-3  # 12 warm-up steps, then stable until the decay
    assert 2e-3 > rates[193] > rates[216] > rates[239] > 0 and rates[239] < 2e-3 / 100
