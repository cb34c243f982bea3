"""Clients of running services: `seft revise` (a reviser service) and `seft judge` (an LLM
judge behind an OpenAI-compatible endpoint)."""

from __future__ import annotations

import json
import sys

from seft.cli.args import positive
from seft.errors import SeftError
from seft.settings import MAX_NEW_TOKENS


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
    from seft.settings import Sampling

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


def register(sub) -> None:
    rv = sub.add_parser("revise", help="revise one response, or a JSONL file of them, with a reviser service")
    rv.add_argument("--endpoint", required=True, help="host:port of a reviser")
    rv.add_argument("--prompt", help="the prompt (a user message)")
    rv.add_argument("--response", help="the response to revise")
    rv.add_argument("--input", help='JSONL of {"prompt": str or messages, "response": str}')
    rv.add_argument("--output", help="JSONL written with label, revised and revision added (default stdout)")
    rv.add_argument("--max-new-tokens", type=positive, default=MAX_NEW_TOKENS)
    rv.add_argument("--temperature", type=float, default=0.0)
    rv.add_argument("--tls-ca", help="PEM CA of the server's certificate: connect with TLS")
    rv.add_argument("--tls-cert", help="client certificate (mutual TLS)")
    rv.add_argument("--tls-key", help="client key (mutual TLS)")
    rv.set_defaults(func=cmd_revise)
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
