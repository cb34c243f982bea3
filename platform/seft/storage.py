"""Artifact storage. A run's artifacts live under `<store>/<run name>/<stage>/`, each with a
`manifest.json` (inputs, parameters, record counts, sha256 of every file). Publishing is
atomic: a stage writes into a staging directory and publish() moves the finished artifact,
manifest included, into place in one rename, so a reader never sees a half-written artifact.

`file://` is the local default; `s3://` (MinIO) plugs in behind the same interface."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from seft import __version__
from seft.errors import SeftError

MANIFEST = "manifest.json"


def validate_key(key: str) -> str:
    """An object key relative to a store prefix; it can never escape that prefix."""
    if not isinstance(key, str) or not key:
        raise SeftError(f"object key {key!r}: must be a non-empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise SeftError(f"object key {key!r}: control characters are not allowed")
    if key.startswith("/") or "\\" in key:
        raise SeftError(f"object key {key!r}: must be relative and use '/' separators")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise SeftError(f"object key {key!r}: empty, '.' and '..' segments are not allowed")
    return key


def write_atomic(path: Path, text: str) -> None:
    """Write a small file so that readers see the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(root: Path) -> dict[str, dict[str, Any]]:
    """sha256, size and (for JSONL) record count of every file under root."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        entry: dict[str, Any] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if path.suffix == ".jsonl":
            with path.open("rb") as handle:
                entry["records"] = sum(1 for line in handle if line.strip())
        files[path.relative_to(root).as_posix()] = entry
    return files


def fingerprint(stage: str, params: dict, inputs: dict[str, str]) -> str:
    """What a stage's output depends on: its parameters and its inputs' digests."""
    blob = json.dumps({"stage": stage, "params": params, "inputs": inputs, "version": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()


class FileStore:
    """`file://PATH`: artifacts as directories on a local (or shared) filesystem."""

    def __init__(self, root: Path):
        self.root = root

    def uri(self, key: str) -> str:
        return (self.root / validate_key(key)).resolve().as_uri()

    def path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def manifest(self, key: str) -> dict | None:
        """The artifact's manifest, or None when no complete artifact is published."""
        path = self.path(key) / MANIFEST
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise SeftError(f"{path}: unreadable manifest: {exc}") from None

    def staging(self, key: str) -> Path:
        """A fresh directory to build an artifact in; publish() moves it into place."""
        path = self.root / ".staging" / f"{validate_key(key).replace('/', '_')}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def publish(self, staging: Path, key: str, manifest: dict) -> dict:
        manifest = {**manifest, "files": describe_files(staging), "published": time.time(),
                    "code_version": __version__}
        write_atomic(staging / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if target.exists():  # an older or incomplete artifact: move it aside, then swap
            trash = self.root / ".trash" / uuid.uuid4().hex
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, trash)
        os.replace(staging, target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return manifest

    def clean(self) -> None:
        """Remove what interrupted stages left behind (never visible as artifacts)."""
        for leftover in (".staging", ".trash"):
            shutil.rmtree(self.root / leftover, ignore_errors=True)


def open_store(uri: str, run: str) -> FileStore:
    """The store for one run: `<uri>/<run>/`."""
    validate_key(run)
    if uri.startswith("file://"):
        root = Path(uri[len("file://"):] or ".")
        return FileStore(root / run)
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme == "s3":
        raise SeftError(f"store {uri!r}: s3:// stores are not available in this version yet")
    raise SeftError(f"store {uri!r}: unsupported URI, expected file://PATH")
