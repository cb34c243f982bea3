"""The S3 store under faults: the server gone mid-upload, unreachable, a missing bucket; and no
credential in any log line or error message."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from seft.errors import SeftError
from seft.spec import StoreConfig
from seft.storage import open_store

from helpers import S3_SECRET, new_bucket
from faults import TcpProxy

pytestmark = pytest.mark.integration


def test_server_gone_mid_checkpoint_upload_then_back(s3_server, s3_env, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    endpoint, port = s3_server
    bucket = new_bucket(endpoint)
    proxy = TcpProxy(port, cut_after=24 << 20)  # the server "stops" after 24 MiB of a 64 MiB upload
    cfg = StoreConfig(uri=f"s3://{bucket}/runs", endpoint=proxy.endpoint, secure=False, retries=2)
    store = open_store(cfg, "demo", scratch=tmp_path / "scratch")

    def stage_output():
        staging = store.staging("warmup")
        (staging / "reviser").mkdir()
        (staging / "reviser" / "model.safetensors").write_bytes(os.urandom(64 << 20))
        (staging / "reviser" / "config.json").write_text("{}")
        return staging

    with pytest.raises(SeftError) as err:
        store.publish(stage_output(), "warmup", {"fingerprint": "1"})
    message = str(err.value)
    assert proxy.endpoint in message and f"s3://{bucket}/runs/demo/warmup/" in message
    assert "cannot upload" in message and "unreachable" in message, message

    # Nothing is visible: no manifest (the commit marker), so no artifact.
    direct = open_store(StoreConfig(uri=f"s3://{bucket}/runs", endpoint=endpoint, secure=False), "demo")
    assert direct.manifest("warmup") is None
    with pytest.raises(SeftError, match="no published artifact"):
        direct.fetch("warmup")

    # The server is back: the next run cleans up and publishes.
    proxy.restore()
    store.clean()
    assert [k for k, _ in direct.list("warmup")] == []
    staging = stage_output()
    expected = (staging / "reviser" / "model.safetensors").read_bytes()
    store.publish(staging, "warmup", {"fingerprint": "1"})
    monkeypatch.setenv("SEFT_CACHE_DIR", str(tmp_path / "other-node"))  # a reader on another node downloads it
    assert (direct.fetch("warmup") / "reviser" / "model.safetensors").read_bytes() == expected

    assert S3_SECRET not in caplog.text and S3_SECRET not in message


def test_unreachable_endpoint_names_endpoint_and_bucket(s3_env):
    from helpers import free_port

    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens here
    with pytest.raises(SeftError) as err:
        open_store(StoreConfig(uri="s3://some-bucket/x", endpoint=endpoint, secure=False, retries=1), "run")
    assert endpoint in str(err.value) and "s3://some-bucket" in str(err.value)
    assert "unreachable" in str(err.value) and S3_SECRET not in str(err.value)


def test_missing_bucket_is_a_clear_error(s3_server, s3_env):
    with pytest.raises(SeftError, match="the bucket does not exist; create it first"):
        open_store(StoreConfig(uri="s3://no-such-bucket-here", endpoint=s3_server[0], secure=False), "run")


def test_credentials_from_a_mounted_secret_directory(s3_server, s3_env, tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "AWS_ACCESS_KEY_ID").write_text("seft-test-access\n")
    (secret / "AWS_SECRET_ACCESS_KEY").write_text(S3_SECRET + "\n")
    bucket = new_bucket(s3_server[0])
    store = open_store(StoreConfig(uri=f"s3://{bucket}", endpoint=s3_server[0], secure=False,
                                   credentials_dir=str(secret)), "run")
    store.put_text("hello.txt", "hi")
    assert [k for k, _ in store.list("")] == ["hello.txt"]


def test_concurrent_readers_share_one_cached_copy(s3_server, s3_env, tmp_path, monkeypatch):
    bucket = new_bucket(s3_server[0])
    store = open_store(StoreConfig(uri=f"s3://{bucket}", endpoint=s3_server[0], secure=False), "run",
                       scratch=tmp_path / "scratch")
    staging = store.staging("s")
    (staging / "w.bin").write_bytes(os.urandom(1 << 20))
    manifest = store.publish(staging, "s", {"fingerprint": "1"})
    monkeypatch.setenv("SEFT_CACHE_DIR", str(tmp_path / "fresh-node"))
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(store.fetch("s"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 4 and len(set(paths)) == 1
    assert [p.name for p in (tmp_path / "fresh-node").iterdir()] == [paths[0].name]  # no partial left
    assert (paths[0] / "w.bin").stat().st_size == manifest["files"]["w.bin"]["bytes"]
