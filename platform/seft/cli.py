"""The `seft` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from seft.errors import SeftError, SpecError


def cmd_validate(args) -> int:
    from seft.spec import load_spec

    spec = load_spec(args.file, args.set)
    print(f"{args.file}: valid {spec.recipe} pipeline {spec.name!r}")
    return 0


def cmd_run(args) -> int:
    from rich.console import Console

    from seft.executors.local import run_pipeline
    from seft.recipes import stages_for
    from seft.report import claim_line, policy_table, refinement_table, reviser_table, stages_table, write_report
    from seft.spec import load_spec

    spec = load_spec(args.file, args.set)
    console = Console()
    report = run_pipeline(spec, stages_for(spec), console, workdir=Path(args.workdir))
    console.print(stages_table(report))
    metrics = report.get("metrics")
    if metrics and "refinement" in metrics:  # SELF, EVOLVE
        console.print(refinement_table(metrics))
    elif metrics:
        critic = spec.critics[0].name
        console.print(reviser_table(metrics, critic))
        claim = claim_line(report)
        if claim:
            console.print(claim, soft_wrap=True)
        console.print(policy_table(metrics))
    from seft.storage import open_store

    run_dir = Path(report["run_dir"])
    markdown = write_report(run_dir, _evaluate_samples(open_store(spec.store, spec.name)))
    console.print(f"wall time {report['wall_seconds']:.0f}s; report: {markdown} (and {run_dir / 'report.json'})",
                  soft_wrap=True)  # paths stay whole, for copying
    return 0


def _evaluate_samples(store) -> list[dict] | None:
    """The evaluate stage's reviser rows (for the reward histograms), or None without them."""
    from seft.records import read_jsonl

    if store.manifest("evaluate") is None:
        return None
    return [r for r in read_jsonl(store.fetch("evaluate") / "samples.jsonl") if "reviser" in r]


def cmd_report(args) -> int:
    from seft.report import write_report
    from seft.spec import load_spec
    from seft.storage import open_store

    run_dir = _run_dir(args.run)
    report = json.loads((run_dir / "report.json").read_text())
    if args.spec:
        spec = load_spec(args.spec)
        store = open_store(spec.store, spec.name)
    elif report["store"].startswith("file://"):
        store = open_store(report["store"])
    else:
        store = None
        print(f"{report['store']}: give --spec for the store's settings to plot reward histograms", file=sys.stderr)
    print(write_report(run_dir, _evaluate_samples(store) if store else None))
    return 0


def cmd_judge(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from seft.judge import Judge, pick_prompt, question_text
    from seft.records import read_jsonl, write_jsonl

    prompt = pick_prompt(args.prompts, args.prompt_name, "--prompt-name")
    rows, items = list(read_jsonl(args.input)), []
    for i, row in enumerate(rows, 1):
        question, answer = row.get("prompt"), row.get("response")
        if isinstance(question, list):  # chat messages: the last user turn is the question
            question = question_text(question)
        if not isinstance(question, str) or not isinstance(answer, str):
            raise SeftError(f"{args.input}:{i}: needs 'prompt' (text or messages) and 'response' (text)")
        items.append((question, answer))
    judge = Judge(args.endpoint, args.model, prompt, api_key_env=args.api_key_env, concurrency=args.concurrency)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("judging", total=len(items))
        report = judge.grade(items, on_done=lambda n: bar.advance(task, n))
    write_jsonl(args.output, ({**row, "rating": j.rating, "judge_error": j.error, "judgement": j.text}
                              for row, j in zip(rows, report.judgements)))
    print(json.dumps(report.summary()))
    return 0


def cmd_compare(args) -> int:
    from rich.console import Console

    from seft.report import compare_table

    Console().print(compare_table([json.loads((_run_dir(r) / "report.json").read_text()) for r in args.runs]))
    return 0


def _run_dir(ref: str) -> Path:
    path = Path(ref)
    if (path / "run.json").exists():
        return path
    if (Path("runs") / ref / "run.json").exists():
        return Path("runs") / ref
    raise SeftError(f"no run at {ref!r}: expected a run directory (with run.json) or a run name under ./runs")


def _cluster():
    try:
        from seft_operator import cluster
    except ImportError as exc:
        raise SeftError(f"the cluster commands need the operator extra: pip install 'seft[operator]' ({exc})") from None
    return cluster


def cmd_status(args) -> int:
    from rich.console import Console

    from seft.report import pipeline_table, stages_table

    if args.kube:
        pipeline = _cluster().get(args.run, args.namespace, args.context)
        if args.json:
            print(json.dumps(pipeline.get("status") or {}, indent=2))
        else:
            Console().print(pipeline_table(pipeline))
        return 0
    run_dir = _run_dir(args.run)
    run = json.loads((run_dir / "run.json").read_text())
    alive = _pid_alive(run.get("pid"))
    for stage in run.get("stages", {}).values():
        if stage.get("state") == "running" and not alive:
            stage["state"] = "interrupted"
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        Console().print(stages_table(run))
    return 0


def cmd_stage(args) -> int:
    from rich.console import Console

    from seft.executors.pod import run_stage
    from seft.spec import load_spec

    summary = run_stage(load_spec(args.spec), args.stage, Console(stderr=True), Path(args.workdir))
    print(json.dumps(summary, default=str))
    return 0


def cmd_submit(args) -> int:
    if not Path(args.file).exists():
        raise SeftError(f"{args.file!r}: no such file")
    print(_cluster().submit(args.file, args.namespace, args.context))
    return 0


def cmd_logs(args) -> int:
    if args.kube:
        print(_cluster().logs(args.run, args.stage, args.namespace, args.context))
        return 0
    logs = _run_dir(args.run) / "logs"
    files = sorted(logs.glob(f"{args.stage}-*.log" if args.stage else "*.log"))
    if not files:
        raise SeftError(f"no logs{f' of stage {args.stage!r}' if args.stage else ''} under {logs}")
    for f in files:
        print(f"==> {f.name} <==\n{f.read_text()}")
    return 0


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _store_at(args, uri: str):
    """(store, key) for a store URI given on the command line."""
    from seft.spec import StoreConfig, load_spec
    from seft.storage import open_store, validate_key

    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        root = f"s3://{bucket}"
    elif uri.startswith("file://"):
        path = uri[len("file://"):]
        root, key = ("file:///", path.lstrip("/")) if path.startswith("/") else ("file://.", path)
    else:
        raise SeftError(f"{uri!r}: expected a store URI, file://PATH or s3://BUCKET/KEY")
    key = key.strip("/")
    if key:
        validate_key(key)  # before any connection is made
    if args.spec:
        settings = load_spec(args.spec).store.model_dump(exclude={"uri"})
    else:
        settings = {"endpoint": args.endpoint, "secure": not args.insecure, "region": args.region,
                    "ca_bundle": args.ca_bundle, "credentials_dir": args.credentials_dir}
    return open_store(StoreConfig(uri=root, **settings)), key


def cmd_store(args) -> int:
    if args.action == "ls":
        store, key = _store_at(args, args.uri)
        for name, size in store.list(key):
            print(f"{size:>12}  {store.uri(name)}")
    elif args.action == "rm":
        store, key = _store_at(args, args.uri)
        if not key:
            raise SeftError(f"{args.uri!r}: refusing to remove a whole bucket or store root")
        removed = store.remove(key)
        if not removed:
            raise SeftError(f"{args.uri!r}: nothing to remove")
        print(f"removed {removed} objects")
    elif "://" in args.src and "://" not in args.dst:
        store, key = _store_at(args, args.src)
        objects = [name for name, _ in store.list(key)]
        if not objects:
            raise SeftError(f"{args.src!r}: no such object or prefix")
        dst = Path(args.dst)
        if objects == [key]:  # one object: to a file, or into a directory
            store.download(key, dst / Path(key).name if dst.is_dir() else dst)
        else:
            for name in objects:
                store.download(name, dst / Path(name).relative_to(key))
        print(f"copied {len(objects)} objects to {dst}")
    elif "://" in args.dst and "://" not in args.src:
        store, key = _store_at(args, args.dst)
        src = Path(args.src)
        if src.is_file():
            store.upload(src, f"{key}/{src.name}" if args.dst.endswith("/") or not key else key)
            count = 1
        elif src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.is_file())
            for path in files:
                store.upload(path, "/".join(filter(None, [key, path.relative_to(src).as_posix()])))
            count = len(files)
        else:
            raise SeftError(f"{args.src!r}: no such file or directory")
        print(f"copied {count} files to {args.dst}")
    else:
        raise SeftError("store cp copies between a store URI and a local path (one of each)")
    return 0


def _revise_items(args) -> list[dict]:
    if args.input:
        if args.prompt or args.response:
            raise SeftError("give --input FILE or --prompt/--response, not both")
        from seft.records import read_jsonl

        items = []
        for i, rec in enumerate(read_jsonl(args.input), 1):
            prompt, response = rec.get("prompt"), rec.get("response")
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            if not isinstance(prompt, list) or not prompt or not isinstance(response, str):
                raise SeftError(f"{args.input}:{i}: needs 'prompt' (text or messages) and 'response' (text)")
            items.append({**rec, "prompt": prompt})
        return items
    if args.prompt is None or args.response is None:
        raise SeftError("give --prompt and --response, or --input FILE")
    return [{"prompt": [{"role": "user", "content": args.prompt}], "response": args.response}]


def cmd_revise(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from seft.client import ClientTLS, ReviserClient
    from seft.records import write_jsonl
    from seft.spec import Sampling

    items = _revise_items(args)
    tls = ClientTLS(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    revised = 0

    def rows(client, bar, task):  # streamed: each row is written as its chunk arrives
        nonlocal revised
        for it, r in zip(items, client.revise_stream([(it["prompt"], it["response"]) for it in items], sampling)):
            bar.advance(task)
            revised += r.revised
            yield {**it, "label": r.label.value if r.label else None, "revised": r.revised, "revision": r.text}

    with ReviserClient(args.endpoint, tls=tls) as client, Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("revising", total=len(items))
        if args.output:  # atomic: a failed run leaves no partial file
            write_jsonl(args.output, rows(client, bar, task))
            print(f"revised {revised} of {len(items)}; wrote {args.output}", file=sys.stderr)
        else:
            for row in rows(client, bar, task):
                print(json.dumps(row, ensure_ascii=False), flush=True)
    return 0


def cmd_train(args) -> int:
    from seft.train import torchrun_command

    if not Path(args.config).exists():
        raise SeftError(f"--config {args.config!r}: no such file")
    cmd = torchrun_command(Path(args.config), args.nproc_per_node)
    for item in args.set:
        cmd += ["--set", item]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.execv(cmd[0], cmd)


def cmd_serve(args) -> int:
    from seft_services.protocol import Limits
    from seft_services.server import Server, ServerTLS, build_backend, configure_logging, run_forever

    configure_logging()
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_client_ca and not args.tls_cert):
        raise SeftError("TLS needs --tls-cert and --tls-key together (and them for --tls-client-ca)")
    tls = ServerTLS(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    try:
        backends = {args.kind: build_backend(args.kind, model=args.model, label_first=not args.no_labels,
                                             critic_backend=args.critic, critic_callable=args.callable,
                                             backend=args.backend, openai_url=args.openai_url,
                                             served_model=args.served_model)}
        if args.kind == "generator" and args.critic:  # served beside it; self-refinement scores with it
            backends["critic"] = build_backend("critic", model=args.critic_model, critic_backend=args.critic,
                                               critic_callable=args.callable)
        server = Server(backends, host=args.host, port=args.port, tls=tls, metrics_port=args.metrics_port,
                        limits=Limits(max_batch=args.max_batch, max_new_tokens=args.max_new_tokens),
                        batch_wait_ms=args.batch_wait_ms, max_message_bytes=args.max_message_bytes)
    except (ValueError, OSError) as exc:
        raise SeftError(str(exc)) from None
    run_forever(server, args.port_file)
    return 0


def positive(text: str) -> int:
    """argparse type: argparse's error names the flag, this names the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seft", description="Align LLMs by self-evolution (SEFT).")
    sub = p.add_subparsers(dest="command", required=True)
    overrides = {"action": "append", "default": [], "metavar": "FIELD=VALUE",
                 "help": "override a spec field, e.g. --set reviser_training.learning_rate=1e-5"}

    v = sub.add_parser("validate", help="check a pipeline spec")
    v.add_argument("file")
    v.add_argument("--set", **overrides)
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help="run a pipeline on this machine (resumes where it stopped)")
    r.add_argument("file")
    r.add_argument("--set", **overrides)
    r.add_argument("--workdir", default="runs", help="where run.json, logs and report.json go (default ./runs)")
    r.set_defaults(func=cmd_run)

    kube = argparse.ArgumentParser(add_help=False)
    kube.add_argument("--kube", action="store_true", help="read the cluster (a SeftPipeline) instead of a local run")
    kube.add_argument("--namespace", "-n", default="seft", help="with --kube (default seft)")
    kube.add_argument("--context", help="with --kube: the kubeconfig context (default the current one)")

    rp = sub.add_parser("report", help="write report.md and plots/*.png for a run (seft run does it at the end)")
    rp.add_argument("run", help="run directory, or run name under ./runs")
    rp.add_argument("--spec", help="the run's spec: the store's settings, for an s3:// store")
    rp.set_defaults(func=cmd_report)

    jd = sub.add_parser("judge", help="rate answers 1-10 with an LLM judge (MT-Bench single-answer grading)")
    jd.add_argument("--endpoint", required=True, help="an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    jd.add_argument("--model", required=True, help="the judge model's name at that endpoint")
    jd.add_argument("--input", required=True, help='JSONL of {"prompt": text or messages, "response": text}')
    jd.add_argument("--output", required=True, help="the input rows with rating, judge_error and judgement added")
    jd.add_argument("--prompts", help="FastChat's judge_prompts.jsonl, to grade with MT-Bench's own prompt")
    jd.add_argument("--prompt-name", default="single-v1", help="with --prompts (default single-v1)")
    jd.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    jd.add_argument("--concurrency", type=positive, default=8)
    jd.set_defaults(func=cmd_judge)

    cp_ = sub.add_parser("compare", help="several runs' results side by side")
    cp_.add_argument("runs", nargs="+", help="run directories, or run names under ./runs")
    cp_.set_defaults(func=cmd_compare)

    s = sub.add_parser("status", parents=[kube], help="each stage's state, timing and outputs")
    s.add_argument("run", help="run directory, or run name under ./runs; with --kube the pipeline's name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    lg = sub.add_parser("logs", parents=[kube], help="a run's logs, or one stage's")
    lg.add_argument("run", help="run directory, or run name under ./runs; with --kube the pipeline's name")
    lg.add_argument("stage", nargs="?")
    lg.set_defaults(func=cmd_logs)

    sg = sub.add_parser("stage", help="run one stage in a pod (the operator's Jobs): inputs from the store, "
                                      "services from SEFT_SERVICE_<NAME>")
    sg.add_argument("stage")
    sg.add_argument("--spec", required=True, help="the pipeline spec (the operator mounts it)")
    sg.add_argument("--workdir", default="/tmp/seft", help="scratch space")
    sg.set_defaults(func=cmd_stage)

    sb = sub.add_parser("submit", help="create (or update) a SeftPipeline on the cluster, like kubectl apply -f")
    sb.add_argument("file", help="a SeftPipeline manifest")
    sb.add_argument("--namespace", "-n", default="seft")
    sb.add_argument("--context", help="the kubeconfig context (default the current one)")
    sb.set_defaults(func=cmd_submit)

    st = sub.add_parser("store", help="inspect artifacts: ls, cp, rm (file:// or s3:// URIs)")
    st_sub = st.add_subparsers(dest="action", required=True)
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--spec", help="take the endpoint and TLS settings from this pipeline spec's store")
    conn.add_argument("--endpoint", help="s3: host[:port]")
    conn.add_argument("--insecure", action="store_true", help="s3: plain HTTP")
    conn.add_argument("--region")
    conn.add_argument("--ca-bundle")
    conn.add_argument("--credentials-dir", help="s3: a directory with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY files")
    ls = st_sub.add_parser("ls", parents=[conn], help="list objects under a URI")
    ls.add_argument("uri")
    cp = st_sub.add_parser("cp", parents=[conn], help="copy between a store URI and a local path")
    cp.add_argument("src")
    cp.add_argument("dst")
    rm = st_sub.add_parser("rm", parents=[conn], help="remove every object under a URI")
    rm.add_argument("uri")
    st.set_defaults(func=cmd_store)

    t = sub.add_parser("train", help="fine-tune under torchrun (HF Trainer, optional DeepSpeed)")
    t.add_argument("--config", required=True, help="TrainJob YAML/JSON (model, data, output_dir, ...)")
    t.add_argument("--nproc-per-node", type=positive, default=1)
    t.add_argument("--set", **overrides)
    t.set_defaults(func=cmd_train)

    sv = sub.add_parser("serve", help="run one gRPC service")
    sv.add_argument("kind", choices=["generator", "reviser", "critic", "labeller"])
    sv.add_argument("--model", help="HF model dir (generator, reviser, reward-model critic)")
    sv.add_argument("--backend", choices=["transformers", "openai"], default="transformers",
                    help="generator / reviser: the model in this process, or an OpenAI-compatible server (vLLM)")
    sv.add_argument("--openai-url", help="openai backend: the server's base URL, e.g. http://127.0.0.1:8000/v1")
    sv.add_argument("--served-model", help="openai backend: the model's served name (default: the only one served)")
    sv.add_argument("--no-labels", action="store_true", help="reviser trained without labels (always revises)")
    sv.add_argument("--critic", choices=["rule", "reward-model"],
                    help="critic / labeller backend; for a generator, a critic served beside it that "
                         "self-refinement scores with (refine.samples, refine.keep_best)")
    sv.add_argument("--callable", help="rule critic: package.module:function")
    sv.add_argument("--critic-model", help="a generator's reward-model critic: HF sequence-classification dir")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=50051)
    sv.add_argument("--port-file", help="write the bound port here once serving")
    sv.add_argument("--max-batch", type=positive, default=256,
                    help="most items in one unary call (a stream's chunk size)")
    sv.add_argument("--max-new-tokens", type=positive, default=4096,
                    help="the largest sampling.max_new_tokens accepted")
    sv.add_argument("--max-message-bytes", type=positive, default=64 << 20, help="largest gRPC message in or out")
    sv.add_argument("--batch-wait-ms", type=float, default=5.0,
                    help="gather concurrent calls for up to this long into one batch (0: off)")
    sv.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free port)")
    sv.add_argument("--tls-cert", help="PEM certificate: serve TLS")
    sv.add_argument("--tls-key", help="PEM private key of --tls-cert")
    sv.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (mutual TLS)")
    sv.set_defaults(func=cmd_serve)

    rv = sub.add_parser("revise", help="revise one response, or a JSONL file of them, with a reviser service")
    rv.add_argument("--endpoint", required=True, help="host:port of a reviser")
    rv.add_argument("--prompt", help="the prompt (a user message)")
    rv.add_argument("--response", help="the response to revise")
    rv.add_argument("--input", help='JSONL of {"prompt": str or messages, "response": str}')
    rv.add_argument("--output", help="JSONL written with label, revised and revision added (default stdout)")
    rv.add_argument("--max-new-tokens", type=positive, default=256)
    rv.add_argument("--temperature", type=float, default=0.0)
    rv.add_argument("--tls-ca", help="PEM CA of the server's certificate: connect with TLS")
    rv.add_argument("--tls-cert", help="client certificate (mutual TLS)")
    rv.add_argument("--tls-key", help="client key (mutual TLS)")
    rv.set_defaults(func=cmd_revise)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SeftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
