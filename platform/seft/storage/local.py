"""`file://PATH`: artifacts as directories on a local or shared filesystem. Publishing is one
rename of a finished directory (manifest included) into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from seft.errors import SeftError
from seft.storage.base import MANIFEST, Store, new_manifest, validate_key, verify, write_atomic


class FileStore(Store):
    def __init__(self, root: Path):
        self.root = root
        self._verified: dict[str, tuple] = {}  # key -> manifest digest + mtimes checked

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key) if key else self.root

    def uri(self, key: str = "") -> str:
        return self._path(key).resolve().as_uri()

    def manifest(self, key: str) -> dict | None:
        path = self._path(key) / MANIFEST
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise SeftError(f"{path}: unreadable manifest: {exc}") from None

    def staging(self, key: str) -> Path:
        path = self.root / ".staging" / f"{validate_key(key).replace('/', '_')}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def publish(self, staging: Path, key: str, manifest: dict) -> dict:
        manifest = new_manifest(staging, manifest)
        write_atomic(staging / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        target = self._path(key)
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

    def fetch(self, key: str) -> Path:
        manifest = self.manifest(key)
        if manifest is None:
            raise SeftError(f"{self.uri(key)}: no published artifact")
        path = self._path(key)
        # Hash each file once per process unless it changed since (large checkpoints).
        stamp = tuple((rel, (path / rel).stat().st_mtime_ns) for rel in manifest["files"] if (path / rel).exists())
        if self._verified.get(key) != stamp:
            verify(path, manifest, self.uri(key))
            self._verified[key] = stamp
        return path

    def clean(self) -> None:
        for leftover in (".staging", ".trash"):
            shutil.rmtree(self.root / leftover, ignore_errors=True)

    def put_text(self, key: str, text: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self._path(prefix)
        if base.is_file():
            yield prefix, base.stat().st_size
            return
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = path.relative_to(self.root).as_posix()
            if not rel.startswith((".staging/", ".trash/")):
                yield rel, path.stat().st_size

    def download(self, key: str, dest: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise SeftError(f"{self.uri(key)}: no such object")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)

    def upload(self, src: Path, key: str) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)

    def remove(self, prefix: str) -> int:
        keys = [k for k, _ in self.list(prefix)]
        for k in keys:
            self._path(k).unlink()
        base = self._path(prefix)
        if prefix and base.is_dir():
            shutil.rmtree(base, ignore_errors=True)
        return len(keys)
