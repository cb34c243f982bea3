"""`seft store ls|cp|rm` against file:// and the S3 server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import S3_SECRET, new_bucket

pytestmark = pytest.mark.integration


@pytest.fixture(params=["file", "s3"])
def target(request, tmp_path):
    """(base URI, extra CLI flags)."""
    if request.param == "file":
        return f"file://{tmp_path}/store", []
    endpoint, _ = request.getfixturevalue("s3_server")
    request.getfixturevalue("s3_env")
    return f"s3://{new_bucket(endpoint)}", ["--endpoint", endpoint, "--insecure"]


def seft_store(*args):
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "store", *args], capture_output=True, text=True,
                          timeout=120, env=os.environ)
    assert S3_SECRET not in proc.stdout + proc.stderr
    return proc


def test_cp_ls_rm_roundtrip(target, tmp_path):
    base, flags = target
    src = tmp_path / "ckpt"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "w.bin").write_bytes(b"\x00" * 1234)

    up = seft_store("cp", str(src), f"{base}/runs/demo/model", *flags)
    assert up.returncode == 0, up.stderr
    listed = seft_store("ls", f"{base}/runs/demo", *flags)
    assert listed.returncode == 0, listed.stderr
    lines = [ln.split() for ln in listed.stdout.splitlines()]
    assert lines == [["2", f"{base}/runs/demo/model/config.json"], ["1234", f"{base}/runs/demo/model/sub/w.bin"]]

    down = seft_store("cp", f"{base}/runs/demo/model", str(tmp_path / "back"), *flags)
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back" / "sub" / "w.bin").read_bytes() == b"\x00" * 1234
    one = seft_store("cp", f"{base}/runs/demo/model/config.json", str(tmp_path), *flags)
    assert one.returncode == 0 and (tmp_path / "config.json").read_text() == "{}"

    gone = seft_store("rm", f"{base}/runs/demo/model/sub", *flags)
    assert gone.returncode == 0 and "removed 1 objects" in gone.stdout
    assert len(seft_store("ls", f"{base}/runs", *flags).stdout.splitlines()) == 1


@pytest.mark.parametrize("args, needle", [
    (["ls", "ftp://x/y"], "expected a store URI"),
    (["ls", "s3://bucket/../etc", "--endpoint", "127.0.0.1:1", "--insecure"], "object key"),
    (["cp", "a", "b"], "one of each"),
])
def test_bad_uris_are_clear_errors(args, needle, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    proc = seft_store(*args)
    assert proc.returncode == 1 and needle in proc.stderr


def test_rm_refuses_a_bucket_and_missing_prefixes(target):
    base, flags = target
    if base.startswith("s3://"):
        assert "refusing to remove a whole bucket" in seft_store("rm", base + "/", *flags).stderr
    assert "nothing to remove" in seft_store("rm", f"{base}/nope", *flags).stderr
