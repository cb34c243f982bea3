"""Regenerate the checked-in gRPC stubs: python scripts/gen_protos.py [OUT_DIR].

OUT_DIR defaults to platform/ (stubs land in platform/seft/v1/). tests/unit/test_protos.py
generates into a temporary directory and fails when the checked-in files differ.
"""

import sys
from pathlib import Path

from grpc_tools import protoc
import grpc_tools

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"


def generate(out_dir: Path) -> list[Path]:
    files = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "seft" / "v1").glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *files]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")
    return sorted((out_dir / "seft" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "platform"
    for path in generate(out):
        print(path)
