"""A test double for vLLM's OpenAI-compatible server: a real HTTP server on loopback that serves
a tiny transformers model with vLLM's semantics for what the `openai` backend uses.

POST /v1/completions, streamed (token-id or text prompt; max_tokens, temperature, seed,
logit_bias, and vLLM's stop_token_ids and return_token_ids; stop_reason in the reply);
GET /v1/models. It generates token by token
and, like vLLM, aborts a streamed request whose client has gone. tests/integration/test_openai_backend.py
runs the same checks against a real vLLM when SEFT_VLLM_PYTHON names one."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


class Model:
    def __init__(self, model_dir: str):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.lock = threading.Lock()
        self.suppress = list(getattr(self.model.generation_config, "suppress_tokens", None) or [])

    @torch.inference_mode()
    def tokens(self, ids: list[int], req: dict):
        """Yield new token ids one at a time (EOS included), following the request's sampling."""
        gen = torch.Generator().manual_seed(req["seed"]) if req.get("seed") is not None else None
        bias = torch.zeros(self.model.config.vocab_size)
        for tok, b in (req.get("logit_bias") or {}).items():
            bias[int(tok)] = float(b)
        bias[self.suppress] = -float("inf")
        past, inputs = None, torch.tensor([ids])
        for _ in range(req.get("max_tokens") or 16):
            with self.lock:
                out = self.model(input_ids=inputs, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float() + bias
            temperature = req.get("temperature", 1.0)
            if temperature == 0:
                tok = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, -1)
                tok = int(torch.multinomial(probs, 1, generator=gen))
            yield tok
            inputs = torch.tensor([[tok]])


class Handler(BaseHTTPRequestHandler):
    server: "OpenAIServer"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server.name, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        if req.get("model") != self.server.name:
            return self._json(404, {"error": {"message": f"The model `{req.get('model')}` does not exist."}})
        if not req.get("stream"):
            return self._json(400, {"error": {"message": "this test double only streams"}})
        self.server.requests.append(req)
        tok = self.server.lm.tokenizer
        prompt = req["prompt"]
        ids = prompt if isinstance(prompt, list) else tok(prompt, add_special_tokens=False)["input_ids"]
        stop_ids = set(req.get("stop_token_ids") or [])
        out, text, finish, reason = [], "", "length", None
        for t in self.server.lm.tokens(ids, req):
            out.append(t)
            full = tok.decode(out, skip_special_tokens=True)
            if t == tok.eos_token_id or t in stop_ids:
                finish, reason = "stop", (t if t in stop_ids else None)
                break
            if not self._send_chunk(full[len(text):], [t], None, None, req):
                self.server.aborted.append(len(out))  # the client went away: stop, as vLLM does
                return
            text = full
        self.server.generated.append(len(out))
        last = [out[-1]] if finish == "stop" else []  # the stop token (EOS or a stop_token_id) ends the ids
        self._send_chunk("", last, finish, reason, req)
        self._raw(b"data: [DONE]\n\n")

    def _send_chunk(self, delta: str, token_ids: list[int], finish, reason, req: dict) -> bool:
        if not self.headers_sent_:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.headers_sent_ = True
        choice = {"index": 0, "text": delta, "finish_reason": finish, "stop_reason": reason, "logprobs": None}
        if req.get("return_token_ids"):
            choice["token_ids"] = token_ids
        return self._event({"id": "cmpl-test", "object": "text_completion", "model": self.server.name,
                            "choices": [choice], "usage": None})

    def _event(self, body: dict) -> bool:
        return self._raw(b"data: " + json.dumps(body).encode() + b"\n\n")

    def _raw(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    headers_sent_ = False


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model_dir: str, name: str = "tiny"):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lm, self.name = Model(model_dir), name
        self.requests: list[dict] = []
        self.generated: list[int] = []  # completion tokens of each finished request
        self.aborted: list[int] = []    # tokens generated before each abort
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def wait_aborted(self, timeout: float = 10.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while not self.aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.aborted
