import pytest

from pydantic import ValidationError

from seft.errors import SeftError, SpecError
from seft.spec import StoreConfig
from seft.specfile import parse_spec
from seft.storage import fingerprint, manifest_digest, open_store, validate_key


@pytest.mark.parametrize("key", ["", "../x", "a/../../b", "/etc/passwd", "a//b", "a/./b", "a\\b", "a\x00b",
                                 "new\nline", "a/.."])
def test_bad_keys_are_rejected(key):
    with pytest.raises(SeftError, match="object key"):
        validate_key(key)


@pytest.mark.parametrize("key", ["warmup", "warmup/reviser/model.safetensors", "a-b_c.d"])
def test_good_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize("uri, needle", [("gs://b", "expected file://PATH or s3://"),
                                         ("./runs", "expected file://PATH or s3://"),
                                         ("s3://Bad_Bucket/x", "not a valid bucket name"),
                                         ("s3://bucket/../x", "object key")])
def test_bad_store_uris(uri, needle, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    with pytest.raises((SeftError, SpecError), match=needle):
        open_store(uri, "run")


def test_run_name_cannot_escape_the_store(tmp_path):
    with pytest.raises(SeftError):
        open_store(f"file://{tmp_path}", "../elsewhere")


def test_s3_without_credentials_says_where_they_come_from(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SeftError, match="no S3 credentials: set AWS_ACCESS_KEY_ID"):
        open_store(StoreConfig(uri="s3://bucket", endpoint="127.0.0.1:9"), "run")


def test_credentials_in_the_spec_are_refused_without_echoing_them():
    with pytest.raises(ValidationError) as err:
        StoreConfig(uri="s3://b", secret_key="hunter2-very-secret")
    assert "credentials never go in the spec" in str(err.value)
    with pytest.raises(SpecError) as err:
        parse_spec({"name": "x", "store": {"uri": "s3://b", "access_key": "AKIA-SECRET-VALUE"}, "critics": []})
    assert "AKIA-SECRET-VALUE" not in str(err.value)


def test_fingerprint_depends_on_params_and_inputs():
    base = fingerprint("s", {"lr": 1}, {"prev": "abc"})
    assert base == fingerprint("s", {"lr": 1}, {"prev": "abc"})
    assert base != fingerprint("s", {"lr": 2}, {"prev": "abc"})
    assert base != fingerprint("s", {"lr": 1}, {"prev": "abd"})
    assert manifest_digest({"files": {"a": 1}}) != manifest_digest({"files": {"a": 2}})
