"""Artifact storage: `file://` (local default) and `s3://` (MinIO) behind one interface."""

from __future__ import annotations

from pathlib import Path

from seft.errors import SeftError
from seft.storage.base import (MANIFEST, Store, describe_files, fingerprint, join, manifest_digest, sha256_file,
                               sha256_path, validate_key, write_atomic)

__all__ = ["FILE", "MANIFEST", "S3", "Store", "describe_files", "fingerprint", "is_local", "local_path", "localize",
           "manifest_digest", "open_store", "sha256_file", "sha256_path", "split_uri", "validate_key", "write_atomic"]

FILE, S3 = "file://", "s3://"  # the two kinds of store; this module is the one place that parses them


def is_local(uri: str) -> bool:
    return uri.startswith(FILE)


def local_path(location: str) -> Path:
    """A file or store on this machine, named by a path or a file:// URI (`~` is the home directory)."""
    return Path(location.removeprefix(FILE) or ".").expanduser()


def split_uri(uri: str) -> tuple[str, str]:
    """(the store's root URI, the key in it) of a URI given on a command line:
    s3://BUCKET/KEY, file:///ABS/PATH or file://REL/PATH. The key is validated before any
    connection is made."""
    if uri.startswith(S3):
        bucket, _, key = uri[len(S3):].partition("/")
        root = S3 + bucket
    elif is_local(uri):
        path = uri[len(FILE):]
        root, key = (FILE + "/", path.lstrip("/")) if path.startswith("/") else (FILE + ".", path)
    else:
        raise SeftError(f"{uri!r}: expected a store URI, file://PATH or s3://BUCKET/KEY")
    key = key.strip("/")
    return root, validate_key(key) if key else key


def localize(store: Store, key: str, scratch: Path) -> Path:
    """A local path for `key`: inside the published artifact that holds it (verified, cached), or,
    for objects no artifact holds (a model put there with `seft store cp`), a plain download."""
    parts = validate_key(key).split("/")
    for n in range(len(parts), 0, -1):
        if store.manifest("/".join(parts[:n])) is not None:
            return store.fetch("/".join(parts[:n])).joinpath(*parts[n:])
    objects = list(store.list(key))
    if not objects:
        raise SeftError(f"{store.uri(key)}: no artifact or object there")
    dest = scratch / key
    for obj, _ in objects:
        rel = obj[len(key):].lstrip("/")
        store.download(obj, dest / rel if rel else dest)
    return dest


def open_store(cfg, prefix: str = "", scratch: Path | None = None) -> Store:
    """The store at `cfg.uri` (a StoreConfig, or a URI string), narrowed to `prefix`.
    `scratch` is a local directory for staging artifacts before an s3:// upload."""
    from seft.spec import StoreConfig
    from seft.specfile import validate

    if isinstance(cfg, str):
        cfg = validate(StoreConfig, {"uri": cfg}, "store")
    if prefix:
        validate_key(prefix)
    uri = cfg.uri
    if is_local(uri):
        from seft.storage.local import FileStore

        root = local_path(uri)
        return FileStore(root / prefix if prefix else root)
    if uri.startswith(S3):
        from seft.storage.s3 import S3Store

        bucket, _, base = uri[len(S3):].partition("/")
        base = base.strip("/")
        if base:
            validate_key(base)
        return S3Store(cfg, bucket, join(base, prefix), scratch)
    raise SeftError(f"store {uri!r}: unsupported URI, expected file://PATH or s3://BUCKET[/PREFIX]")
