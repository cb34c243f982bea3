"""`s3://bucket/prefix`: artifacts in S3-compatible storage (MinIO) through the minio SDK.

Publishing un-commits the old manifest first, uploads every file (files in parallel, large
files as parallel multipart uploads), writes the manifest last, then drops objects the new
manifest does not list: a reader sees the old artifact, nothing, or the new one, never a mix.
fetch() downloads into a node-local cache keyed by the artifact's content hash, verifying
every file's sha256, so an artifact already on the node is not downloaded again.

Credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or
MINIO_ACCESS_KEY / MINIO_SECRET_KEY) or a mounted Kubernetes Secret directory holding files of
those names; never from the spec, and they are never logged."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import urllib3
from minio import Minio
from minio.credentials import ChainedProvider, Credentials, EnvAWSProvider, EnvMinioProvider, Provider
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error

from seft.errors import SeftError
from seft.storage.base import MANIFEST, Store, join, manifest_digest, new_manifest, sha256_file, validate_key

if TYPE_CHECKING:
    from seft.spec import StoreConfig

T = TypeVar("T")
PART_BYTES = 16 << 20  # the range size of parallel ranged downloads
RANGED_BYTES = 256 << 20  # larger objects download as parallel ranges; smaller ones stream, hashed inline
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class SecretDirProvider(Provider):
    """Credentials from a mounted Kubernetes Secret: files AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    (and optionally AWS_SESSION_TOKEN) in one directory."""

    def __init__(self, directory: str):
        self.directory = Path(directory)

    def retrieve(self) -> Credentials:
        def read(name: str) -> str | None:
            path = self.directory / name
            return path.read_text().strip() if path.is_file() else None

        access, secret = read("AWS_ACCESS_KEY_ID"), read("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise ValueError(f"{self.directory} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY")
        return Credentials(access, secret, read("AWS_SESSION_TOKEN"))


def cache_root() -> Path:
    return Path(os.environ.get("SEFT_CACHE_DIR") or Path.home() / ".cache" / "seft" / "artifacts")


class S3Store(Store):
    def __init__(self, cfg: "StoreConfig", bucket: str, prefix: str, scratch: Path | None = None):
        if not BUCKET.match(bucket):
            raise SeftError(f"store {cfg.uri!r}: {bucket!r} is not a valid bucket name")
        self.cfg, self.bucket, self.prefix, self.scratch = cfg, bucket, prefix, scratch
        self.endpoint = cfg.endpoint or "s3.amazonaws.com"
        providers = ([SecretDirProvider(cfg.credentials_dir)] if cfg.credentials_dir else [])
        providers += [EnvAWSProvider(), EnvMinioProvider()]
        try:
            credentials = ChainedProvider(providers)
            credentials.retrieve()
        except ValueError:
            raise SeftError(f"store {cfg.uri!r}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(or MINIO_ACCESS_KEY and MINIO_SECRET_KEY), or mount a Secret at "
                            "store.credentials_dir") from None
        retries = urllib3.Retry(total=cfg.retries, connect=cfg.retries, read=cfg.retries, backoff_factor=0.5,
                                status_forcelist=[500, 502, 503, 504], allowed_methods=None)
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": cfg.ca_bundle} if cfg.ca_bundle else {}
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=300), retries=retries,
                                   maxsize=cfg.parallel * 2, **tls)
        self.client = Minio(self.endpoint, secure=cfg.secure, region=cfg.region, credentials=credentials,
                            http_client=http)
        if not self._call("check the bucket", "", lambda: self.client.bucket_exists(bucket)):
            raise SeftError(f"s3://{bucket} at {self.endpoint}: the bucket does not exist; create it first "
                            f"(e.g. `mc mb ALIAS/{bucket}`)")

    # -- plumbing -------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return join(self.prefix, validate_key(key)) if key else self.prefix

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run one SDK call; any failure becomes a SeftError naming endpoint, bucket and key."""
        where = f"s3://{self.bucket}/{key} at {self.endpoint}"
        try:
            return fn()
        except S3Error as exc:
            raise SeftError(f"{where}: cannot {what}: {exc.code}: {exc.message}") from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SeftError(f"{where}: cannot {what}: store unreachable or failing "
                            f"({type(reason).__name__}: {reason})") from None

    def _parallel(self, fn: Callable, items: list) -> None:
        with ThreadPoolExecutor(max_workers=self.cfg.parallel) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _put_file(self, src: Path, full: str) -> None:
        # The SDK's own part size (5 MiB up, growing with the file) and part parallelism (3).
        self._call("upload", full, lambda: self.client.fput_object(self.bucket, full, str(src)))

    def _get_file(self, full: str, dest: Path, size: int) -> str:
        """Download one object to dest; returns its sha256, computed as the bytes arrive."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if size > RANGED_BYTES:
            self._get_ranges(full, dest, size)
            return sha256_file(dest)

        def get() -> str:
            digest = hashlib.sha256()
            resp = self.client.get_object(self.bucket, full)
            try:
                with dest.open("wb") as handle:
                    for chunk in resp.stream(1 << 20):
                        handle.write(chunk)
                        digest.update(chunk)
            finally:
                resp.close()
                resp.release_conn()
            return digest.hexdigest()

        return self._call("download", full, get)

    def _get_ranges(self, full: str, dest: Path, size: int) -> None:
        """A large object as parallel ranged GETs into a preallocated file."""
        with dest.open("wb") as handle:
            handle.truncate(size)
            fd = handle.fileno()

            def fetch_range(offset: int) -> None:
                length = min(PART_BYTES, size - offset)

                def get() -> bytes:
                    resp = self.client.get_object(self.bucket, full, offset=offset, length=length)
                    try:
                        return resp.read()
                    finally:
                        resp.close()
                        resp.release_conn()

                data = self._call("download", full, get)
                if len(data) != length:
                    raise SeftError(f"s3://{self.bucket}/{full}: short read at {offset}")
                os.pwrite(fd, data, offset)

            self._parallel(fetch_range, list(range(0, size, PART_BYTES)))

    # -- Store ----------------------------------------------------------------------------
    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def manifest(self, key: str) -> dict | None:
        full = join(self._key(key), MANIFEST)

        def get() -> dict | None:
            try:
                resp = self.client.get_object(self.bucket, full)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return json.loads(resp.read())
            finally:
                resp.close()
                resp.release_conn()

        return self._call("read the manifest", full, get)

    def staging(self, key: str) -> Path:
        if self.scratch is None:  # made on first use: most stores only read
            self.scratch = Path(tempfile.mkdtemp(prefix="seft-staging-"))
        path = self.scratch / f"{validate_key(key).replace('/', '_')}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def publish(self, staging: Path, key: str, manifest: dict) -> dict:
        base = self._key(key)
        manifest_key = join(base, MANIFEST)
        self._call("un-commit the old manifest", manifest_key,
                   lambda: self.client.remove_object(self.bucket, manifest_key))
        files = [p.relative_to(staging).as_posix() for p in sorted(staging.rglob("*")) if p.is_file()]
        with ThreadPoolExecutor(max_workers=1) as hasher:  # hash while the files upload
            described = hasher.submit(new_manifest, staging, manifest)
            self._parallel(lambda rel: self._put_file(staging / rel, join(base, validate_key(rel))), files)
            manifest = described.result()
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._call("write the manifest", manifest_key, lambda: self.client.put_object(
            self.bucket, manifest_key, io.BytesIO(body), len(body), content_type="application/json"))
        keep = {join(base, rel) for rel in manifest["files"]} | {manifest_key}
        self._remove_all([o for o, _ in self._list_full(base + "/") if o not in keep], "remove a stale object")
        self._into_cache(staging, manifest)
        return manifest

    def _into_cache(self, staging: Path, manifest: dict) -> None:
        """What was just published is on this node already: keep it as the cache entry."""
        dest = cache_root() / manifest_digest(manifest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(staging, ignore_errors=True)
            return
        try:
            os.replace(staging, dest)
        except OSError:  # another filesystem: copy the few bytes that matter later
            shutil.copytree(staging, dest, dirs_exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)

    def fetch(self, key: str) -> Path:
        manifest = self.manifest(key)
        if manifest is None:
            raise SeftError(f"{self.uri(key)}: no published artifact")
        dest = cache_root() / manifest_digest(manifest)
        if dest.is_dir():
            if all((dest / rel).is_file() and (dest / rel).stat().st_size == e["bytes"]
                   for rel, e in manifest["files"].items()):
                return dest
            broken = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.broken")  # incomplete: download again
            os.replace(dest, broken)
            shutil.rmtree(broken, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            base = self._key(key)

            def get(item: tuple[str, dict]) -> None:
                rel, entry = item
                path = partial / validate_key(rel)
                if self._get_file(join(base, rel), path, entry["bytes"]) != entry["sha256"] \
                        or path.stat().st_size != entry["bytes"]:
                    raise SeftError(f"{self.uri(key)}: {rel} is corrupted (sha256 does not match the manifest)")

            self._parallel(get, list(manifest["files"].items()))
            try:
                os.replace(partial, dest)
            except OSError:
                pass  # a concurrent reader published the same content first: use theirs
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return dest

    def clean(self) -> None:
        """Drop objects of artifacts that have no manifest (interrupted publishes) and abort
        their incomplete multipart uploads."""
        groups: dict[str, list[str]] = {}
        for full, _ in self._list_full(self.prefix + "/" if self.prefix else ""):
            rel = full[len(self.prefix):].lstrip("/")
            if "/" in rel:
                groups.setdefault(rel.split("/", 1)[0], []).append(full)
        leftovers = [full for stage, objects in groups.items() if join(self.prefix, stage, MANIFEST) not in objects
                     for full in objects]
        self._remove_all(leftovers, "remove a leftover")
        self._abort_incomplete_uploads()

    def _abort_incomplete_uploads(self) -> None:
        lister = getattr(self.client, "_list_multipart_uploads", None)  # not public in minio 7
        if lister is None:
            return
        try:
            result = lister(self.bucket, prefix=self.prefix or None)
            for upload in result.uploads:
                self.client._abort_multipart_upload(self.bucket, upload.object_name, upload.upload_id)
        except (S3Error, MinioException, urllib3.exceptions.HTTPError, TypeError, AttributeError):
            pass  # best effort: MinIO also expires stale uploads by itself (24 h by default)

    def put_text(self, key: str, text: str) -> None:
        full, body = self._key(key), text.encode()
        self._call("upload", full, lambda: self.client.put_object(self.bucket, full, io.BytesIO(body), len(body)))

    def _list_full(self, prefix: str) -> Iterator[tuple[str, int]]:
        objects = self._call("list", prefix, lambda: list(self.client.list_objects(
            self.bucket, prefix=prefix or None, recursive=True)))
        for obj in objects:
            yield obj.object_name, obj.size

    def _under(self, key: str) -> Iterator[tuple[str, int]]:
        """(full name, bytes) of the object `key` and of every object below it; all objects
        for the empty key."""
        base = self._key(key) if key else self.prefix
        for full, size in self._list_full(base):
            if not base or full == base or full.startswith(base + "/"):
                yield full, size

    def _remove_all(self, names: list[str], what: str) -> None:
        """One multi-object delete request per 1000 names, not one request per object."""
        for start in range(0, len(names), 1000):
            chunk = names[start:start + 1000]
            errors = self._call(what, chunk[0], lambda chunk=chunk: list(self.client.remove_objects(
                self.bucket, [DeleteObject(name) for name in chunk])))
            if errors:
                raise SeftError(f"s3://{self.bucket}/{errors[0].name} at {self.endpoint}: cannot {what}: "
                                f"{errors[0].code}: {errors[0].message}")

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        for full, size in self._under(prefix):
            yield full[strip:], size

    def download(self, key: str, dest: Path) -> None:
        full = self._key(key)
        stat = self._call("stat", full, lambda: self.client.stat_object(self.bucket, full))
        self._get_file(full, dest, stat.size)

    def upload(self, src: Path, key: str) -> None:
        self._put_file(src, self._key(key))

    def remove(self, prefix: str) -> int:
        names = [full for full, _ in self._under(prefix)]
        self._remove_all(names, "remove")
        return len(names)
