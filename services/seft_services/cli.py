"""`seft serve`: one gRPC service. Registered with the `seft` command through the
`seft.commands` entry point (the core never imports this package)."""

from __future__ import annotations

from seft.cli.args import positive
from seft.errors import SeftError
from seft.spec import SERVICE_MAX_BATCH, SERVICE_MAX_NEW_TOKENS


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


def register(sub) -> None:
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
    sv.add_argument("--max-batch", type=positive, default=SERVICE_MAX_BATCH,
                    help="most items in one unary call (a stream's chunk size)")
    sv.add_argument("--max-new-tokens", type=positive, default=SERVICE_MAX_NEW_TOKENS,
                    help="the largest sampling.max_new_tokens accepted")
    sv.add_argument("--max-message-bytes", type=positive, default=64 << 20, help="largest gRPC message in or out")
    sv.add_argument("--batch-wait-ms", type=float, default=5.0,
                    help="calls gather into one batch while the backend is busy; under load a batch waits up "
                         "to this long, or half the last batch's time if longer, after the last one for its "
                         "callers to return (0: batching off)")
    sv.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free port)")
    sv.add_argument("--tls-cert", help="PEM certificate: serve TLS")
    sv.add_argument("--tls-key", help="PEM private key of --tls-cert")
    sv.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (mutual TLS)")
    sv.set_defaults(func=cmd_serve)
