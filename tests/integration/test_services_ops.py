"""What operators need of a service: TLS (and mutual TLS), Prometheus metrics; and `seft revise`."""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from seft.client import ClientTLS, CriticClient, ReviserClient
from seft.errors import SeftError
from seft_services.backends.critics import RuleCritic
from seft_services.backends.transformers_lm import CausalLM, TransformersReviser
from seft_services.server import Server, ServerTLS

from helpers import Served

pytestmark = pytest.mark.integration
RULE = "seft.tasks.sorting:score"
PROMPT = [{"role": "user", "content": "Sort ascending : 3 1 2"}]


def _cert(name: str, issuer_key=None, issuer_name=None, ca: bool = False):
    """A key and certificate (self-signed when no issuer) valid for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _write(tmp_path, name, key, cert):
    from cryptography.hazmat.primitives import serialization

    key_path, cert_path = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server and a client certificate signed by it, and an unrelated CA."""
    tmp = tmp_path_factory.mktemp("pki")
    ca_key, ca = _cert("seft-test-ca", ca=True)
    server_key, server = _cert("127.0.0.1", ca_key, ca.subject)
    client_key, client = _cert("seft-client", ca_key, ca.subject)
    other_key, other = _cert("other-ca", ca=True)
    return {"ca": _write(tmp, "ca", ca_key, ca)[0], "server": _write(tmp, "server", server_key, server),
            "client": _write(tmp, "client", client_key, client), "other_ca": _write(tmp, "other", other_key, other)[0]}


def _score(endpoint, tls=None):
    with CriticClient(endpoint, timeout=5, tls=tls) as client:
        return client.score([(PROMPT, "1 2 3")])


def test_tls_server_with_a_self_signed_certificate(pki):
    cert, key = pki["server"]
    srv = Server({"critic": RuleCritic(RULE)}, tls=ServerTLS(cert, key)).start()
    try:
        assert _score(srv.endpoint, ClientTLS(pki["ca"])) == [1.0]
        with pytest.raises(SeftError, match="UNAVAILABLE"):  # a client without TLS is refused
            _score(srv.endpoint)
        with pytest.raises(SeftError, match="UNAVAILABLE"):  # a client that does not trust the CA
            _score(srv.endpoint, ClientTLS(pki["other_ca"]))
    finally:
        srv.stop(grace=1)


def test_mutual_tls_requires_a_client_certificate(pki):
    cert, key = pki["server"]
    srv = Server({"critic": RuleCritic(RULE)}, tls=ServerTLS(cert, key, client_ca=pki["ca"])).start()
    try:
        client_cert, client_key = pki["client"]
        assert _score(srv.endpoint, ClientTLS(pki["ca"], client_cert, client_key)) == [1.0]
        with pytest.raises(SeftError, match="UNAVAILABLE"):
            _score(srv.endpoint, ClientTLS(pki["ca"]))
    finally:
        srv.stop(grace=1)


def _scrape(port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_prometheus_metrics(no_revise_reviser):
    srv = Server({"critic": RuleCritic(RULE), "reviser": TransformersReviser(CausalLM(str(no_revise_reviser)))},
                 metrics_port=0).start()
    try:
        with CriticClient(srv.endpoint, batch_size=2) as critic:
            critic.score([(PROMPT, "1 2 3")] * 3)  # two calls: 2 items, then 1
            with pytest.raises(SeftError):
                critic.score([([{"role": "user", "content": " "}], "x")])
        with ReviserClient(srv.endpoint) as reviser:
            reviser.revise([(PROMPT, "3 1 2"), (PROMPT, "1 2 3")])
        m = _scrape(srv.metrics_port)
        assert m[("seft_requests_total", (("code", "OK"), ("method", "Score")))] == 2
        assert m[("seft_requests_total", (("code", "INVALID_ARGUMENT"), ("method", "Score")))] == 1
        assert m[("seft_request_seconds_count", (("method", "Score"),))] == 3
        assert m[("seft_batch_items_sum", (("method", "Score"),))] == 2 + 1  # the invalid call ran no batch
        assert m[("seft_requests_in_flight", (("method", "Score"),))] == 0
        assert m[("seft_revision_labels_total", (("label", "no"),))] == 2
        assert m[("seft_tokens_generated_total", (("method", "Revise"),))] == 2  # one label token each
    finally:
        srv.stop(grace=1)


@pytest.fixture(scope="module")
def reviser_endpoint(no_revise_reviser):
    srv = Server({"reviser": TransformersReviser(CausalLM(str(no_revise_reviser)))}).start()
    yield srv.endpoint
    srv.stop(grace=1)


def seft(*args):
    return subprocess.run([sys.executable, "-m", "seft.cli", *args], capture_output=True, text=True, timeout=120)


def test_seft_revise_one_response(reviser_endpoint):
    proc = seft("revise", "--endpoint", reviser_endpoint, "--prompt", "Sort ascending : 3 1 2", "--response", "1 2 3")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert (row["label"], row["revised"], row["revision"]) == ("[No Revise]", False, "1 2 3")


def test_seft_revise_a_jsonl_file(reviser_endpoint, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": "a", "prompt": "Sort ascending : 2 1", "response": "2 1"}\n'
                   '{"id": "b", "prompt": [{"role": "user", "content": "Sort ascending : 5 4"}], "response": "4 5"}\n')
    proc = seft("revise", "--endpoint", reviser_endpoint, "--input", str(src), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and all(r["label"] == "[No Revise]" for r in rows)
    assert rows[1]["revision"] == "4 5"
    gone = tmp_path / "gone.jsonl"  # a server that is not there: an error naming it, and no partial file
    proc = seft("revise", "--endpoint", "127.0.0.1:1", "--input", str(src), "--output", str(gone))
    assert proc.returncode == 1 and "127.0.0.1:1: UNAVAILABLE" in proc.stderr and not gone.exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "response": "y"}\n{"prompt": "x"}\n')
    proc = seft("revise", "--endpoint", reviser_endpoint, "--input", str(bad))
    assert proc.returncode == 1 and "bad.jsonl:2: needs 'prompt'" in proc.stderr


def test_seft_serve_with_tls_and_metrics(pki, tmp_path):
    cert, key = pki["server"]
    with Served(tmp_path, "critic", "--critic", "rule", "--callable", RULE, "--tls-cert", cert, "--tls-key", key,
                "--metrics-port", "0") as served:
        assert _score(served.endpoint, ClientTLS(pki["ca"])) == [1.0]
        assert served.stop() == 0
    assert seft("serve", "critic", "--critic", "rule", "--callable", RULE, "--tls-cert", cert).returncode == 1
