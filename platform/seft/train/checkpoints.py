"""Checkpoints that outlive the training process (training.save_steps).

The HF Trainer writes checkpoint-N directories (model, optimizer, scheduler, RNG, data position;
DeepSpeed's ZeRO shards too). Once every rank has written one, rank 0 marks it complete with
seft-complete.json inside it, naming the job it belongs to, and, when the training runs on store
URIs (a training pod), copies it to the store, marker last. A training started again (a new
process, a new pod) resumes from the newest complete checkpoint of the same job; one cut off
mid-write (no marker) or another job's (another marker) is never used. A finished training
removes its checkpoints."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from seft.storage.base import join, sha256_file

MARKER = "seft-complete.json"
NAME = re.compile(r"^checkpoint-(\d+)$")


def job_digest(job, data_file: Path) -> str:
    """What makes a checkpoint reusable: the job's settings, model and data content (not where the
    data file or the output lie: a resumed local stage writes its data to a new staging directory)."""
    fields = job.model_dump(mode="json", exclude={"data", "output_dir", "checkpoint_dir", "store", "report_to"})
    return hashlib.sha256(json.dumps([fields, sha256_file(data_file)], sort_keys=True).encode()).hexdigest()


class Checkpoints:
    """`local`: the Trainer's checkpoint directory; with `store` and `key`, their durable copy."""

    def __init__(self, local: Path, digest: str, keep: int, store=None, key: str | None = None):
        self.local, self.digest, self.keep, self.store, self.key = local, digest, keep, store, key

    def _complete(self, marker: dict | None) -> bool:
        return bool(marker) and marker.get("job") == self.digest

    def restore(self) -> str | None:
        """The newest complete checkpoint of this job, as a local directory (fetched from the store
        when there is one); incomplete and foreign checkpoints are removed. Call on one process."""
        if self.store is not None:
            self._fetch_newest()
        newest = None
        for path in sorted(self.local.glob("checkpoint-*"), key=_step):
            marker = path / MARKER
            if self._complete(json.loads(marker.read_text()) if marker.exists() else None):
                newest = path
            else:
                shutil.rmtree(path, ignore_errors=True)
        return str(newest) if newest else None

    def _fetch_newest(self) -> None:
        markers = sorted((k for k, _ in self.store.list(self.key) if k.endswith("/" + MARKER)),
                         key=lambda k: _step(Path(k).parent))
        for key in reversed(markers):
            ckpt = key.rsplit("/", 1)[0]
            tmp = self.local / f".{Path(ckpt).name}.fetch"
            shutil.rmtree(tmp, ignore_errors=True)
            self.store.download_tree(ckpt, tmp)
            if self._complete(json.loads((tmp / MARKER).read_text())):
                shutil.rmtree(self.local / Path(ckpt).name, ignore_errors=True)
                tmp.rename(self.local / Path(ckpt).name)
                return
            shutil.rmtree(tmp, ignore_errors=True)

    def mark(self, step: int) -> None:
        """Rank 0, once every rank has saved checkpoint-{step}: mark it complete (and copy it)."""
        path = self.local / f"checkpoint-{step}"
        (path / "training_args.bin").unlink(missing_ok=True)  # a pickle, and nothing reads it back
        marker = json.dumps({"job": self.digest, "step": step})
        if self.store is not None:
            name = path.name
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                self.store.upload(f, join(self.key, name, f.relative_to(path).as_posix()))
            self.store.put_text(join(self.key, name, MARKER), marker)
            self._prune_store()
        (path / MARKER).write_text(marker)

    def _prune_store(self) -> None:
        """Keep the newest `keep` complete checkpoints in the store; drop older and unmarked ones."""
        keys = [k for k, _ in self.store.list(self.key)]
        complete = sorted({k.rsplit("/", 1)[0] for k in keys if k.endswith("/" + MARKER)}, key=lambda k: _step(Path(k)))
        keep = set(complete[-self.keep:])
        checkpoints = {join(self.key, k[len(self.key):].strip("/").split("/", 1)[0]) for k in keys}
        for ckpt in checkpoints - keep:
            self._remove_under(ckpt)

    def discard(self) -> None:
        """The training finished: its checkpoints are no longer needed."""
        shutil.rmtree(self.local, ignore_errors=True)
        if self.store is not None:
            self._remove_under(self.key)

    def _remove_under(self, prefix: str) -> None:
        """Every object below the directory `prefix` (not a sibling that merely starts like it)."""
        for key, _ in list(self.store.list(prefix)):
            if key.startswith(prefix + "/"):
                self.store.remove(key)


def _step(path: Path) -> int:
    found = NAME.match(path.name)
    return int(found.group(1)) if found else -1
