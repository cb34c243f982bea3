"""`seft store ls | cp | rm`: artifacts in a file:// or s3:// store."""

from __future__ import annotations

import argparse
from pathlib import Path

from seft.errors import SeftError


def _store_at(args, uri: str):
    """(store, key) for a store URI given on the command line."""
    from seft.spec import StoreConfig
    from seft.specfile import load_spec
    from seft.storage import open_store, split_uri

    root, key = split_uri(uri)
    if args.spec:
        settings = load_spec(args.spec).store.model_dump(exclude={"uri"})
    else:
        settings = {"endpoint": args.endpoint, "secure": not args.insecure, "region": args.region,
                    "ca_bundle": args.ca_bundle, "credentials_dir": args.credentials_dir}
    return open_store(StoreConfig(uri=root, **settings)), key


def cmd_ls(args) -> int:
    store, key = _store_at(args, args.uri)
    for name, size in store.list(key):
        print(f"{size:>12}  {store.uri(name)}")
    return 0


def cmd_rm(args) -> int:
    store, key = _store_at(args, args.uri)
    if not key:
        raise SeftError(f"{args.uri!r}: refusing to remove a whole bucket or store root")
    removed = store.remove(key)
    if not removed:
        raise SeftError(f"{args.uri!r}: nothing to remove")
    print(f"removed {removed} objects")
    return 0


def cmd_cp(args) -> int:
    if "://" in args.src and "://" not in args.dst:
        store, key = _store_at(args, args.src)
        count = store.download_tree(key, Path(args.dst))
        if not count:
            raise SeftError(f"{args.src!r}: no such object or prefix")
        print(f"copied {count} objects to {args.dst}")
    elif "://" in args.dst and "://" not in args.src:
        store, key = _store_at(args, args.dst)
        src = Path(args.src)
        if not src.exists():
            raise SeftError(f"{args.src!r}: no such file or directory")
        count = store.upload_tree(src, f"{key}/{src.name}" if src.is_file() and (args.dst.endswith("/") or not key)
                                  else key)
        print(f"copied {count} files to {args.dst}")
    else:
        raise SeftError("store cp copies between a store URI and a local path (one of each)")
    return 0


def register(sub) -> None:
    st = sub.add_parser("store", help="inspect artifacts: ls, cp, rm (file:// or s3:// URIs)")
    st_sub = st.add_subparsers(dest="action", required=True)
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--spec", help="take the endpoint and TLS settings from this pipeline spec's store")
    conn.add_argument("--endpoint", help="s3: host[:port]")
    conn.add_argument("--insecure", action="store_true", help="s3: plain HTTP")
    conn.add_argument("--region")
    conn.add_argument("--ca-bundle")
    conn.add_argument("--credentials-dir", help="s3: a directory with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY files")
    ls = st_sub.add_parser("ls", parents=[conn], help="list objects under a URI")
    ls.add_argument("uri")
    ls.set_defaults(func=cmd_ls)
    cp = st_sub.add_parser("cp", parents=[conn], help="copy between a store URI and a local path")
    cp.add_argument("src")
    cp.add_argument("dst")
    cp.set_defaults(func=cmd_cp)
    rm = st_sub.add_parser("rm", parents=[conn], help="remove every object under a URI")
    rm.add_argument("uri")
    rm.set_defaults(func=cmd_rm)
