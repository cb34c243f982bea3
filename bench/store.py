"""Store throughput, measured side by side in one run against the same S3 server.

    python bench/store.py [--endpoint HOST:PORT] [--mib 200] [--records 1000000]

Without --endpoint it starts moto's S3 server (a separate process) on loopback; give a MinIO
endpoint (and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) to measure real storage.
Prints: upload and download MiB/s of a checkpoint directory through the store (publish / fetch,
sha256 of every file included) against the raw minio SDK fput_object / fget_object of the same
files, the ratio (target: >= 0.9), and records/s streaming a JSONL dataset through the store."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from minio import Minio
from rich.console import Console
from rich.table import Table

from seft.records import read_jsonl, write_jsonl
from seft.spec import StoreConfig
from seft.storage import open_store


def start_moto() -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return f"127.0.0.1:{port}", proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto server did not start")


def make_checkpoint(root: Path, mib: int) -> list[Path]:
    """An HF-like directory: two safetensors shards and small JSON files."""
    root.mkdir(parents=True)
    half = (mib << 20) // 2
    for i in (1, 2):
        with (root / f"model-0000{i}-of-00002.safetensors").open("wb") as f:
            for _ in range(half >> 20):
                f.write(os.urandom(1 << 20))
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "tokenizer.json").write_text("{}" * 1000)
    return sorted(root.iterdir())


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint")
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    moto = None
    endpoint = args.endpoint
    if endpoint is None:
        endpoint, moto = start_moto()
    work = Path(tempfile.mkdtemp(prefix="seft-bench-"))
    os.environ["SEFT_CACHE_DIR"] = str(work / "cache")
    try:
        raw = Minio(endpoint, access_key=os.environ["AWS_ACCESS_KEY_ID"],
                    secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], secure=False)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        raw.make_bucket(bucket)
        files = make_checkpoint(work / "ckpt", args.mib)
        size_mib = sum(f.stat().st_size for f in files) / (1 << 20)

        store = open_store(StoreConfig(uri=f"s3://{bucket}/store", endpoint=endpoint, secure=False), "bench",
                           scratch=work / "scratch")

        def store_upload() -> float:
            staging = store.staging("ckpt")
            shutil.copytree(work / "ckpt", staging, dirs_exist_ok=True)  # not timed: copy into staging
            shutil.rmtree(work / "cache", ignore_errors=True)
            return timed(lambda: store.publish(staging, "ckpt", {"fingerprint": "bench"}))

        def store_download() -> float:
            shutil.rmtree(work / "cache", ignore_errors=True)  # a node without a copy
            return timed(lambda: store.fetch("ckpt"))

        # Interleaved repeats, median of each: the server shares this machine's cores.
        runs: dict[str, list[float]] = {"raw_up": [], "raw_down": [], "store_up": [], "store_down": []}
        def raw_upload() -> float:
            return timed(lambda: [raw.fput_object(bucket, f"raw/{f.name}", str(f)) for f in files])

        def raw_download() -> float:
            return timed(lambda: [raw.fget_object(bucket, f"raw/{f.name}", str(work / "raw-dl" / f.name))
                                  for f in files])

        for i in range(args.repeat):  # alternate who goes first: the server drifts as it fills
            pairs = [("raw_up", raw_upload), ("store_up", store_upload)]
            for name, fn in pairs if i % 2 == 0 else pairs[::-1]:
                runs[name].append(fn())
            pairs = [("raw_down", raw_download), ("store_down", store_download)]
            for name, fn in pairs if i % 2 == 0 else pairs[::-1]:
                runs[name].append(fn())
        raw_up, raw_down, store_up, store_down = (statistics.median(runs[k])
                                                  for k in ("raw_up", "raw_down", "store_up", "store_down"))

        n = args.records
        staging = store.staging("data")
        write_s = timed(lambda: write_jsonl(staging / "data.jsonl", (
            {"id": f"r{i}", "prompt": [{"role": "user", "content": f"Sort ascending : {i % 97} {i % 89}"}]}
            for i in range(n))))
        publish_s = timed(lambda: store.publish(staging, "data", {"fingerprint": "bench"}))
        shutil.rmtree(work / "cache")
        fetched = {}
        fetch_s = timed(lambda: fetched.setdefault("dir", store.fetch("data")))
        read_s = timed(lambda: sum(1 for _ in read_jsonl(fetched["dir"] / "data.jsonl")))

        table = Table(title=f"seft store vs raw minio SDK ({size_mib:.0f} MiB checkpoint, {endpoint}, "
                            f"median of {args.repeat})")
        for col in ("transfer", "raw fput/fget MiB/s", "store MiB/s", "store / raw"):
            table.add_column(col, justify="right")
        for name, r, s in (("upload", raw_up, store_up), ("download", raw_down, store_down)):
            table.add_row(name, f"{size_mib / r:.0f}", f"{size_mib / s:.0f}", f"{r / s:.2f}")
        Console().print(table)
        data = Table(title=f"JSONL through the store ({n:,} records)")
        for col in ("step", "seconds", "records/s"):
            data.add_column(col, justify="right")
        for step, sec in (("write (streaming, to staging)", write_s), ("publish (hash + upload)", publish_s),
                          ("fetch (download + verify)", fetch_s), ("read (streaming)", read_s)):
            data.add_row(step, f"{sec:.2f}", f"{n / sec:,.0f}")
        total = write_s + publish_s + fetch_s + read_s
        data.add_row("end to end", f"{total:.2f}", f"{n / total:,.0f}")
        Console().print(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if moto is not None:
            moto.terminate()


if __name__ == "__main__":
    main()
