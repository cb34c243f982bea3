"""What every store shares: keys that cannot escape their prefix, manifests, hashing, and the
Store interface the executors use.

An artifact is a directory of files under `<store>/<run>/<stage>/` plus `manifest.json`
(inputs, parameters, record counts, sha256 of every file). The manifest is written last: it is
the commit marker, so an artifact without one does not exist for readers."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
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
    if any(p in ("", ".", "..") for p in key.split("/")):
        raise SeftError(f"object key {key!r}: empty, '.' and '..' segments are not allowed")
    return key


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


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


def sha256_path(path: Path) -> str:
    """A file's sha256, or a directory's: of its files' relative paths and digests (a dataset
    written by save_to_disk)."""
    if not path.is_dir():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps([[str(p.relative_to(path)), sha256_file(p)] for p in files]).encode()).hexdigest()


def describe_files(root: Path) -> dict[str, dict[str, Any]]:
    """sha256, size and (for JSONL) record count of every file under root."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        entry: dict[str, Any] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if path.suffix == ".jsonl":
            with path.open("rb") as handle:
                entry["records"] = sum(1 for line in handle if line.strip())
        files[validate_key(path.relative_to(root).as_posix())] = entry
    return files


def fingerprint(stage: str, params: dict, inputs: dict[str, str]) -> str:
    """What a stage's output depends on: its parameters and its inputs' digests."""
    blob = json.dumps({"stage": stage, "params": params, "inputs": inputs, "version": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def manifest_digest(manifest: dict) -> str:
    """The artifact's content address: a hash of its files' hashes."""
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()


def new_manifest(staging: Path, manifest: dict) -> dict:
    import time

    return {**manifest, "files": describe_files(staging), "published": time.time(), "code_version": __version__}


def verify(root: Path, manifest: dict, where: str) -> None:
    """Every file the manifest lists is present with its sha256 (corruption is an error)."""
    for rel, entry in manifest["files"].items():
        path = root / validate_key(rel)
        if not path.is_file():
            raise SeftError(f"{where}: {rel} is missing")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise SeftError(f"{where}: {rel} is corrupted (sha256 does not match the manifest)")


class Store(ABC):
    """Artifacts under one URI prefix. Executors use only this interface."""

    @abstractmethod
    def uri(self, key: str = "") -> str: ...

    @abstractmethod
    def manifest(self, key: str) -> dict | None:
        """The artifact's manifest, or None while no complete artifact is published."""

    @abstractmethod
    def staging(self, key: str) -> Path:
        """A fresh local directory to build an artifact in; publish() takes it."""

    @abstractmethod
    def publish(self, staging: Path, key: str, manifest: dict) -> dict:
        """Make the artifact visible, all of it or nothing; returns the full manifest."""

    @abstractmethod
    def fetch(self, key: str) -> Path:
        """A verified local directory holding the published artifact."""

    @abstractmethod
    def clean(self) -> None:
        """Remove what interrupted publishes left behind (never visible as artifacts)."""

    @abstractmethod
    def put_text(self, key: str, text: str) -> None: ...

    # Object-level operations, for `seft store`.
    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(key, bytes) of every object under prefix, keys relative to the store."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> None: ...

    @abstractmethod
    def upload(self, src: Path, key: str) -> None: ...

    @abstractmethod
    def remove(self, prefix: str) -> int:
        """Remove every object under prefix; returns how many."""

    def download_tree(self, key: str, dest: Path) -> int:
        """Copy the object `key` (to `dest`, or into it if it is a directory) or every object
        under the prefix `key` (into `dest`, keeping their paths below `key`); returns how many."""
        objects = [name for name, _ in self.list(key)]
        if objects == [key]:
            self.download(key, dest / Path(key).name if dest.is_dir() else dest)
        else:
            for name in objects:
                self.download(name, dest / Path(name).relative_to(key))
        return len(objects)

    def upload_tree(self, src: Path, key: str) -> int:
        """Copy the file `src` to `key`, or every file under the directory `src` under the prefix
        `key`; returns how many."""
        if src.is_file():
            self.upload(src, key)
            return 1
        files = sorted(p for p in src.rglob("*") if p.is_file())
        for path in files:
            self.upload(path, join(key, path.relative_to(src).as_posix()))
        return len(files)
