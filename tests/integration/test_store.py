"""One object-store test suite, run against file:// and a real S3 server (moto) on loopback."""

from __future__ import annotations

import json
import os

import pytest

from seft.errors import SeftError
from seft.records import read_jsonl, write_jsonl
from seft.spec import StoreConfig
from seft.storage import MANIFEST, open_store, sha256_file

from helpers import new_bucket

pytestmark = pytest.mark.integration


@pytest.fixture(params=["file", "s3"])
def kind(request):
    return request.param


@pytest.fixture
def make_store(kind, tmp_path, request):
    """make_store(prefix) -> a store of this kind, rooted at a fresh location."""
    if kind == "file":
        return lambda prefix="run": open_store(f"file://{tmp_path}/store", prefix)
    endpoint, _ = request.getfixturevalue("s3_server")
    request.getfixturevalue("s3_env")
    bucket = new_bucket(endpoint)
    cfg = StoreConfig(uri=f"s3://{bucket}/team", endpoint=endpoint, secure=False, retries=1)
    return lambda prefix="run": open_store(cfg, prefix, scratch=tmp_path / "scratch")


@pytest.fixture
def store(make_store):
    return make_store()


def checkpoint(store, key: str, files: dict[str, bytes]):
    staging = store.staging(key)
    for rel, data in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
    return staging


def hashes(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def test_publish_then_fetch_roundtrip(store):
    files = {"model/config.json": b'{"a": 1}', "model/model.safetensors": os.urandom(300_000),
             "data.jsonl": b'{"x": 1}\n{"x": 2}\n'}
    staging = checkpoint(store, "warmup", files)
    assert store.manifest("warmup") is None
    manifest = store.publish(staging, "warmup", {"stage": "warmup", "fingerprint": "f1"})
    assert store.manifest("warmup") == manifest
    assert manifest["files"]["data.jsonl"]["records"] == 2
    fetched = store.fetch("warmup")
    assert hashes(fetched) == {rel: e["sha256"] for rel, e in manifest["files"].items()}
    assert (fetched / "model" / "config.json").read_bytes() == files["model/config.json"]
    assert store.uri("warmup").endswith("/run/warmup")


def test_large_file_multipart_and_parallel_ranges(store, kind, monkeypatch):
    if kind == "s3":  # objects over this download as parallel ranges (256 MiB by default)
        monkeypatch.setattr("seft.storage.s3.RANGED_BYTES", 32 << 20)
    big = os.urandom(40 << 20)  # > 2 parts of 16 MiB: a multipart upload; 3 ranges down
    staging = checkpoint(store, "ckpt", {"model.safetensors": big, "config.json": b"{}"})
    store.publish(staging, "ckpt", {"fingerprint": "x"})
    assert (store.fetch("ckpt") / "model.safetensors").read_bytes() == big


def test_nothing_is_visible_before_publish_and_missing_artifacts_are_errors(store):
    checkpoint(store, "adapt", {"half.jsonl": b'{"a": 1}\n'})  # a stage died before publishing
    assert store.manifest("adapt") is None
    with pytest.raises(SeftError, match="no published artifact"):
        store.fetch("adapt")


def test_republish_replaces_the_whole_artifact(store, make_store):
    store.publish(checkpoint(store, "s", {"old.txt": b"old", "same.txt": b"1"}), "s", {"fingerprint": "1"})
    store.publish(checkpoint(store, "s", {"new.txt": b"new", "same.txt": b"2"}), "s", {"fingerprint": "2"})
    assert store.manifest("s")["fingerprint"] == "2"
    assert sorted(k for k, _ in store.list("s")) == ["s/manifest.json", "s/new.txt", "s/same.txt"]
    fresh = make_store()  # another reader
    assert (fresh.fetch("s") / "same.txt").read_bytes() == b"2"
    assert not (fresh.fetch("s") / "old.txt").exists()


def test_a_corrupted_object_is_detected_on_read(store, kind, tmp_path, monkeypatch):
    store.publish(checkpoint(store, "s", {"w.bin": b"\x01" * 1000}), "s", {"fingerprint": "1"})
    store.upload(_bytes_file(tmp_path, b"\x02" * 1000), "s/w.bin")  # same size, other bytes
    if kind == "s3":
        monkeypatch.setenv("SEFT_CACHE_DIR", str(tmp_path / "other-node"))  # a node without a copy
    with pytest.raises(SeftError, match=r"w.bin is corrupted \(sha256"):
        store.fetch("s")


def _bytes_file(tmp_path, data: bytes):
    path = tmp_path / f"blob-{os.urandom(3).hex()}"
    path.write_bytes(data)
    return path


def test_clean_removes_what_interrupted_publishes_left(store, kind, tmp_path):
    store.publish(checkpoint(store, "done", {"a.txt": b"a"}), "done", {"fingerprint": "1"})
    # What a publish killed half-way leaves: a staging directory (file://, whose publish is one
    # rename) or uploaded objects without a manifest (s3://).
    staging = checkpoint(store, "crashed", {"model.safetensors": b"partial"})
    if kind == "s3":
        store.upload(staging / "model.safetensors", "crashed/model.safetensors")
    assert store.manifest("crashed") is None
    store.clean()
    assert [k for k, _ in store.list("crashed")] == []
    if kind == "file":
        assert not staging.exists()
    assert store.manifest("done") is not None and (store.fetch("done") / "a.txt").read_bytes() == b"a"


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "a\x07b", "a//b", ""])
def test_bad_keys_are_refused_everywhere(store, tmp_path, key):
    blob = _bytes_file(tmp_path, b"x")
    for call in (lambda: store.upload(blob, key or "."), lambda: store.fetch(key or ".."),
                 lambda: store.staging(key or "..")):
        with pytest.raises(SeftError, match="object key"):
            call()


def test_object_operations(store, tmp_path):
    store.upload(_bytes_file(tmp_path, b"hello"), "notes/a.txt")
    store.upload(_bytes_file(tmp_path, b"world!"), "notes/b/c.txt")
    assert sorted(store.list("notes")) == [("notes/a.txt", 5), ("notes/b/c.txt", 6)]
    store.download("notes/b/c.txt", tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == b"world!"
    assert store.remove("notes/b") == 1
    assert [k for k, _ in store.list("notes")] == ["notes/a.txt"]
    store.put_text("report.json", json.dumps({"ok": True}))
    store.download("report.json", tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"ok": True}


def test_streaming_jsonl_through_the_store(store):
    staging = store.staging("prepare")
    n = write_jsonl(staging / "prompts.jsonl", ({"id": f"p{i}", "text": "x" * 50} for i in range(20_000)))
    store.publish(staging, "prepare", {"fingerprint": "p"})
    assert store.manifest("prepare")["files"]["prompts.jsonl"]["records"] == n == 20_000
    count = sum(1 for _ in read_jsonl(store.fetch("prepare") / "prompts.jsonl"))
    assert count == n
