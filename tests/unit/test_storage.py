import json

import pytest

from seft.errors import SeftError
from seft.storage import MANIFEST, fingerprint, manifest_digest, open_store, sha256_file, validate_key


@pytest.mark.parametrize("key", ["", "../x", "a/../../b", "/etc/passwd", "a//b", "a/./b", "a\\b", "a\x00b",
                                 "new\nline", "a/.."])
def test_bad_keys_are_rejected(key):
    with pytest.raises(SeftError, match="object key"):
        validate_key(key)


@pytest.mark.parametrize("key", ["warmup", "warmup/reviser/model.safetensors", "a-b_c.d"])
def test_good_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize("uri, needle", [("s3://bucket/x", "not available"), ("gs://b", "unsupported"),
                                         ("./runs", "unsupported")])
def test_bad_store_uris(uri, needle):
    with pytest.raises(SeftError, match=needle):
        open_store(uri, "run")


def test_run_name_cannot_escape_the_store(tmp_path):
    with pytest.raises(SeftError):
        open_store(f"file://{tmp_path}", "../elsewhere")


def test_publish_writes_manifest_with_hashes_and_counts(tmp_path):
    store = open_store(f"file://{tmp_path}", "run")
    staging = store.staging("prepare")
    (staging / "data.jsonl").write_text('{"a": 1}\n{"a": 2}\n\n')
    (staging / "model").mkdir()
    (staging / "model" / "w.bin").write_bytes(b"\x00" * 10)
    assert store.manifest("prepare") is None  # nothing visible before publish
    manifest = store.publish(staging, "prepare", {"stage": "prepare", "fingerprint": "f"})
    assert not staging.exists()
    on_disk = json.loads((tmp_path / "run" / "prepare" / MANIFEST).read_text())
    assert on_disk == manifest == store.manifest("prepare")
    assert manifest["files"]["data.jsonl"]["records"] == 2
    assert manifest["files"]["model/w.bin"] == {"sha256": sha256_file(tmp_path / "run/prepare/model/w.bin"),
                                                "bytes": 10}


def test_republish_replaces_the_old_artifact_whole(tmp_path):
    store = open_store(f"file://{tmp_path}", "run")
    first = store.staging("s")
    (first / "old.txt").write_text("old")
    store.publish(first, "s", {"fingerprint": "1"})
    second = store.staging("s")
    (second / "new.txt").write_text("new")
    store.publish(second, "s", {"fingerprint": "2"})
    assert sorted(p.name for p in store.path("s").iterdir()) == [MANIFEST, "new.txt"]
    assert store.manifest("s")["fingerprint"] == "2"


def test_interrupted_stage_leaves_nothing_visible_and_clean_removes_it(tmp_path):
    store = open_store(f"file://{tmp_path}", "run")
    staging = store.staging("s")
    (staging / "half.jsonl").write_text('{"a": 1}\n')  # the stage dies here, before publish
    assert store.manifest("s") is None and not store.path("s").exists()
    store.clean()
    assert not staging.exists()


def test_fingerprint_depends_on_params_and_inputs():
    base = fingerprint("s", {"lr": 1}, {"prev": "abc"})
    assert base == fingerprint("s", {"lr": 1}, {"prev": "abc"})
    assert base != fingerprint("s", {"lr": 2}, {"prev": "abc"})
    assert base != fingerprint("s", {"lr": 1}, {"prev": "abd"})
    assert manifest_digest({"files": {"a": 1}}) != manifest_digest({"files": {"a": 2}})
