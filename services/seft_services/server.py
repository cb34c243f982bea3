"""Run services on a gRPC server with health checking and server reflection."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from seft.storage import write_atomic
from seft.v1 import critic_pb2, critic_pb2_grpc, generator_pb2, generator_pb2_grpc, labeller_pb2
from seft.v1 import labeller_pb2_grpc, reviser_pb2, reviser_pb2_grpc
from seft_services.batching import Batched
from seft_services.metrics import Metrics
from seft_services.protocol import Limits, decoder
from seft_services.servicers import CriticServicer, GeneratorServicer, LabellerServicer, ReviserServicer

log = logging.getLogger("seft.services")

# kind -> (servicer class, register function, full service name)
SERVICES = {
    "generator": (GeneratorServicer, generator_pb2_grpc.add_GeneratorServicer_to_server,
                  generator_pb2.DESCRIPTOR.services_by_name["Generator"].full_name),
    "reviser": (ReviserServicer, reviser_pb2_grpc.add_ReviserServicer_to_server,
                reviser_pb2.DESCRIPTOR.services_by_name["Reviser"].full_name),
    "critic": (CriticServicer, critic_pb2_grpc.add_CriticServicer_to_server,
               critic_pb2.DESCRIPTOR.services_by_name["Critic"].full_name),
    "labeller": (LabellerServicer, labeller_pb2_grpc.add_LabellerServicer_to_server,
                 labeller_pb2.DESCRIPTOR.services_by_name["Labeller"].full_name),
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


@dataclass(frozen=True)
class ServerTLS:
    """PEM files: the server's certificate and key; with client_ca, clients must present a
    certificate signed by it (mutual TLS)."""

    cert: str
    key: str
    client_ca: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        read = lambda path: Path(path).read_bytes()  # noqa: E731
        return grpc.ssl_server_credentials([(read(self.key), read(self.cert))],
                                           root_certificates=read(self.client_ca) if self.client_ca else None,
                                           require_client_auth=self.client_ca is not None)


class _SafeDecoding:
    """Takes a generated add_*Servicer_to_server call and registers its handlers with request
    decoding that never raises, so undecodable bytes get INVALID_ARGUMENT and a reason."""

    def __init__(self, server: grpc.Server):
        self.server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # add_registered_method_handlers below registers both kinds

    def add_registered_method_handlers(self, name: str, handlers: dict) -> None:
        safe = {m: h._replace(request_deserializer=decoder(h.request_deserializer)) for m, h in handlers.items()}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, safe),))
        self.server.add_registered_method_handlers(name, safe)


class Server:
    """One gRPC server hosting one or more services, e.g. {"reviser": backend}."""

    def __init__(self, backends: dict, host: str = "127.0.0.1", port: int = 0,
                 limits: Limits = Limits(), max_message_bytes: int = 64 << 20, workers: int = 16,
                 tls: ServerTLS | None = None, metrics_port: int | None = None, batch_wait_ms: float = 5.0):
        unknown = set(backends) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service kinds {sorted(unknown)}: expected {sorted(SERVICES)}")
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
        self.health = health.HealthServicer()
        self.metrics = Metrics()
        names, self.backends = [], {}
        for kind, backend in backends.items():
            servicer_cls, register, name = SERVICES[kind]
            # gather concurrent calls into one backend batch, unless the backend batches itself (vLLM)
            if batch_wait_ms > 0 and not getattr(backend, "batches_itself", False):
                observe = self.metrics.backend_batch.labels(kind).observe
                backend = Batched(backend, limits.max_batch, batch_wait_ms / 1000, on_batch=observe)
            # a generator beside a critic refines with it (self-refinement's samples and keep_best)
            extra = {"critic": backends["critic"]} if kind == "generator" and "critic" in backends else {}
            register(servicer_cls(backend, limits, self.metrics, **extra), _SafeDecoding(self.grpc))
            self.backends[kind] = backend  # as served: batched or not
            names.append(name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.grpc)
        address = f"{host}:{port}"
        self.port = (self.grpc.add_secure_port(address, tls.credentials()) if tls
                     else self.grpc.add_insecure_port(address))
        if self.port == 0:
            raise OSError(f"cannot bind {address}")
        self.names = names
        self.endpoint = f"{host}:{self.port}"
        self.metrics_server = None
        if metrics_port is not None:  # Prometheus scrapes http://host:metrics_port/metrics
            self.metrics_server, _ = start_http_server(metrics_port, addr=host, registry=self.metrics.registry)
        self.metrics_port = self.metrics_server.server_port if self.metrics_server else None

    def start(self) -> "Server":
        self.grpc.start()
        for name in ["", *self.names]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s", ",".join(self.names), self.endpoint)
        return self

    def in_flight(self) -> int:
        return int(sum(s.value for m in self.metrics.inflight.collect() for s in m.samples))

    def stop(self, grace: float = 30.0) -> None:
        """Refuse new calls, let in-flight ones finish within `grace` seconds."""
        log.info("draining %d in-flight calls (grace %.0f s)", self.in_flight(), grace)
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait()
        for backend in self.backends.values():
            if isinstance(backend, Batched):  # its threads hold the model
                backend.close(grace)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()


def run_forever(server: Server, port_file: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain. The handlers are in place before the port file
    says the server is up, and they only wake the main thread through a pipe: a handler that set a
    threading.Event could deadlock on the Event's own lock, should the signal land while the main
    thread held it on its way into wait() (a SIGTERM soon after start-up, on a busy machine)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # the C-level handler writes the signal's number here
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.start()
    if port_file:  # written once serving, atomically: the local executor waits for it
        write_atomic(Path(port_file), str(server.port))
    select.select([wake_r], [], [])
    log.info("shutting down %s (signal %d)", server.endpoint, os.read(wake_r, 1)[0])
    server.stop()


def build_backend(kind: str, model: str | None = None, label_first: bool = True,
                  critic_backend: str | None = None, critic_callable: str | None = None,
                  backend: str = "transformers", openai_url: str | None = None, served_model: str | None = None):
    """model: the HF model dir (for `openai`, its tokenizer and chat template: the same files the
    completions server loads)."""
    if kind in ("generator", "reviser"):
        if not model:
            raise ValueError(f"the {kind} needs --model DIR")
        if backend == "openai":
            from seft_services.backends.openai_lm import OpenAICompletions, OpenAIGenerator, OpenAIReviser

            if not openai_url:
                raise ValueError("the openai backend needs --openai-url, e.g. http://127.0.0.1:8000/v1")
            lm = OpenAICompletions(openai_url, model, served_model)
            return OpenAIGenerator(lm) if kind == "generator" else OpenAIReviser(lm, label_first)
        if backend != "transformers":
            raise ValueError(f"unknown backend {backend!r}: expected transformers or openai")
        from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator, TransformersReviser

        lm = CausalLM(model)
        return TransformersGenerator(lm) if kind == "generator" else TransformersReviser(lm, label_first)
    from seft_services.backends.critics import load_critic

    return load_critic(critic_backend or "rule", critic_callable, model)
