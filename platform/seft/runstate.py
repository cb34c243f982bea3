"""<run>/run.json: each stage's state and timing, and the pid of the `seft run` writing it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from seft.storage import write_atomic

RUNS = Path("runs")  # where runs go by default, and where `seft status NAME` and the rest look


class RunState:
    """Rewritten atomically at every change, so a reader never sees half a file."""

    def __init__(self, path: Path, name: str):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"name": name, "stages": {}}

    def set(self, stage: str, **fields) -> None:
        self.data["stages"].setdefault(stage, {}).update(fields)
        self.data["pid"] = os.getpid()
        write_atomic(self.path, json.dumps(self.data, indent=2))


def read(path: Path) -> dict:
    """run.json as a reader should see it: a stage 'running' under a process that is gone was
    interrupted (killed, or its machine went down)."""
    run = json.loads(path.read_text())
    if not _alive(run.get("pid")):
        for stage in run.get("stages", {}).values():
            if stage.get("state") == "running":
                stage["state"] = "interrupted"
    return run


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
