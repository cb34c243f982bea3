"""Services and single-process trainings start by fork from a process that has imported torch and
transformers once (multiprocessing's forkserver, preloaded), not as fresh interpreters: a fresh
`seft serve` spends 5-8 s of CPU on imports before it loads its model, a training under torchrun
pays the launcher's imports (about 3 s) on top, and a run starts up to 13 services and 13
trainings. The fork server starts at the first child a run needs; each child gets SIGTERM when
the executor ends, however it ends (its parent is the fork server, which lives while any child
does, so PDEATHSIG cannot say)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

# What every local service and training imports (the Llama models the examples use, the service
# backend, the Trainer, datasets); grpc is left out: it is imported after the fork, so no gRPC
# state is forked.
PRELOAD = ["torch", "transformers.modeling_utils", "transformers.models.auto.modeling_auto",
           "transformers.models.llama.modeling_llama", "seft_services.backends.transformers_lm",
           "transformers.trainer", "datasets"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


class Forked:
    """A forked child behind Popen's interface (poll, wait, terminate, kill, returncode; a signal's
    death is -N in both), so the executor treats it like a subprocess."""

    def __init__(self, process: multiprocessing.Process):
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self._process.name, timeout)
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()


def start(module: str, argv: list[str], log: Path, env: dict[str, str]) -> Forked:
    """`python -m MODULE ARGV` (its `main(argv)`) in a forked child whose stdout and stderr go to
    `log`, with environment `env`."""
    proc = _context.Process(target=_main, args=(module, argv, str(log), env, os.getpid()),
                            name=f"{module} {' '.join(argv[:2])}")
    proc.start()
    return Forked(proc)


def single_process_env(env: dict[str, str]) -> dict[str, str]:
    """`env` plus what torchrun gives a world of one process, for code that reads it (DeepSpeed's
    process group, the Trainer's rank): a training forked alone runs as it would under torchrun."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {**env, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
            "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _end_with(pid: int) -> None:
    """SIGTERM to this process when process `pid` ends (a pidfd: the pid cannot be reused meanwhile)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # gone already
        os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="seft-executor-watch").start()


def _main(module: str, argv: list[str], log: str, env: dict[str, str], executor: int) -> None:
    _end_with(executor)
    # The start method a fresh interpreter has, not the fork server's: else a library's semaphores
    # are tracked as the fork server's and reported leaked when a training ends by os._exit.
    multiprocessing.set_start_method(None, force=True)
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # line-buffered: the log shows progress as it happens
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    sys.exit(importlib.import_module(module).main(argv))
