"""What happens to calls over a service's life: cancelled and deadline-exceeded calls stop their
generation and free their slot; shutdown under load drains in-flight calls; 32 clients at once."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import grpc
import pytest

from seft.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator
from seft_services.protocol import Limits
from seft_services.server import Server

from helpers import Served, free_port, hammer, sort_prompts

pytestmark = pytest.mark.integration
MAX_NEW = 3000  # the endless model always generates exactly this many tokens unless stopped


def prompt(text: str = "Sort ascending : 3 1 2"):
    return [common_pb2.ChatMessage(role="user", content=text)]


def metric(server: Server, name: str, **labels) -> float:
    value = server.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def wait_idle(server: Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while server.in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.in_flight() == 0, "a cancelled call still holds its slot"


@pytest.fixture(scope="module")
def endless(endless_model):
    srv = Server({"generator": TransformersGenerator(CausalLM(str(endless_model)))},
                 limits=Limits(max_batch=2, max_new_tokens=MAX_NEW)).start()
    yield srv
    srv.stop(grace=1)


def test_a_deadline_stops_the_generation_and_frees_the_slot(endless):
    with grpc.insecure_channel(endless.endpoint) as ch:
        stub = generator_pb2_grpc.GeneratorStub(ch)
        long = generator_pb2.GenerateRequest(prompts=[generator_pb2.Prompt(messages=prompt())] * 2,
                                             sampling=common_pb2.SamplingParams(max_new_tokens=MAX_NEW))
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(long, timeout=0.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_idle(endless)
        tokens = metric(endless, "seft_tokens_generated_total", method="Generate")
        assert 0 < tokens < 2 * MAX_NEW  # stopped part-way; unstopped it would be exactly 2 * MAX_NEW
        assert metric(endless, "seft_requests_total", method="Generate", code="DEADLINE_EXCEEDED") == 1
        short = generator_pb2.GenerateRequest(prompts=[generator_pb2.Prompt(messages=prompt())],
                                              sampling=common_pb2.SamplingParams(max_new_tokens=5))
        [g] = stub.Generate(short, timeout=30).generations
        assert g.usage.completion_tokens == 5  # the model is served again


def test_a_cancelled_stream_stops_after_the_chunk_in_progress(endless):
    before = metric(endless, "seft_tokens_generated_total", method="Generate")
    with grpc.insecure_channel(endless.endpoint) as ch:
        request = generator_pb2.GenerateRequest(prompts=[generator_pb2.Prompt(messages=prompt())] * 8,
                                                sampling=common_pb2.SamplingParams(max_new_tokens=100))
        call = generator_pb2_grpc.GeneratorStub(ch).GenerateStream(request)
        first = next(call)
        assert first.offset == 0 and [g.usage.completion_tokens for g in first.generations] == [100, 100]
        call.cancel()
        wait_idle(endless)
    generated = metric(endless, "seft_tokens_generated_total", method="Generate") - before
    assert generated < 8 * 100  # at most the chunk in progress ran after the first; never all four
    assert metric(endless, "seft_requests_total", method="GenerateStream", code="CANCELLED") == 1


def test_shutdown_under_load_answers_every_accepted_call(tmp_path, major_reviser):
    # Batches of 4 for 16 clients: a dozen calls wait at any moment, so the signal always finds
    # calls in flight (with batches of 16 it could land between one batch's answers and the next).
    with Served(tmp_path, "reviser", "--model", str(major_reviser), "--max-batch", "4") as served:
        outcomes: list = []
        threads = hammer(served.endpoint, 16, threading.Event(), outcomes)
        while len(outcomes) < 32:  # under load: the 16 clients have had answers, and call again
            assert all(t.is_alive() for t in threads), outcomes[-1:]
            time.sleep(0.05)
        stop_at = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in threads), "a call never got an answer"
        assert served.proc.wait(timeout=60) == 0
    # Refused once shutting down: UNAVAILABLE, or CANCELLED for a call gRPC had received but not
    # yet handed to the service (never an error before the signal).
    refused = [o for o in outcomes if o[2] != "OK"]
    assert {code for _, _, code, _ in refused} <= {"UNAVAILABLE", "CANCELLED"}, refused
    assert all(end > stop_at for _, end, _, _ in refused)
    # Every call the service had accepted when the signal came was answered in full.
    log = served.log.read_text()
    [accepted] = [int(m) for m in re.findall(r"draining (\d+) in-flight calls", log)]
    answered = [o for o in outcomes if o[2] == "OK" and o[1] > stop_at]
    assert accepted > 0 and len(answered) >= accepted, (accepted, len(answered))
    assert all(rev.text == "1 2 3" for *_, rev in answered) and "shutting down" in log


CLIENTS, CALLS = 32, 10  # the long soak (minutes of load) is bench/soak.py


def test_32_clients_against_the_reviser_every_call_answered(tmp_path, major_reviser):
    with Served(tmp_path, "reviser", "--model", str(major_reviser)) as served:
        outcomes: list = []
        for t in hammer(served.endpoint, CLIENTS, threading.Event(), outcomes, calls=CALLS):
            t.join(timeout=300)
        assert served.stop() == 0, served.log.read_text()[-3000:]
    assert sorted(code for _, _, code, _ in outcomes) == ["OK"] * (CLIENTS * CALLS)
    assert all(rev.label == common_pb2.MAJOR_REVISE and rev.text == "1 2 3" for *_, rev in outcomes)


def test_a_client_rides_out_its_service_being_replaced(tmp_path, major_reviser, monkeypatch):
    """As a stage pod's clients do (SEFT_RECONNECT_S set): the service is stopped under load as the
    kubelet stops a deleted pod (SIGTERM, SIGKILL 2 s later) and a new one comes up at the same
    address; every call still returns every item, answered by one server or the other."""
    from seft.client import ReviserClient

    monkeypatch.setenv("SEFT_RECONNECT_S", "120")
    port, model = free_port(), str(major_reviser)
    items = [(p, " ".join(map(str, nums))) for p, nums in sort_prompts(48)]
    results, errors, done = [], [], []

    def stage() -> None:  # a stage's revisions: batches of 4, one in flight
        try:
            with ReviserClient(f"127.0.0.1:{port}", batch_size=4) as client:
                results.append(client.revise(items, on_batch=lambda n: done.append(time.monotonic())))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    with Served(tmp_path, "reviser", "--model", model, "--max-batch", "4", port=port) as first:
        threads = [threading.Thread(target=stage) for _ in range(8)]
        for t in threads:
            t.start()
        while len(done) < 16:  # under load: every client has had answers and called again
            assert not errors and first.proc.poll() is None, errors
            time.sleep(0.05)
        first.proc.send_signal(signal.SIGTERM)
        try:
            first.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # still draining: killed, as the kubelet would
            first.proc.kill()
            first.proc.wait()
        gone = time.monotonic()
        assert any(t.is_alive() for t in threads)  # calls were still to come when it went
    with Served(tmp_path, "reviser", "--model", model, "--max-batch", "4", port=port) as second:
        for t in threads:
            t.join(timeout=300)
        assert second.stop() == 0
    assert not errors, errors
    assert len(results) == 8 and all(len(r) == len(items) and {v.text for v in r} == {"1 2 3"} for r in results)
    assert any(t > gone for t in done)  # the new server answered some of them
