"""Services start by fork from a process that has imported torch and transformers once
(multiprocessing's forkserver, preloaded), not as fresh interpreters: a fresh `seft serve` spends
5-8 s of CPU on imports before it loads its model, and the evaluate stage starts up to 13
services. A forked one is serving in about a second. The fork server starts at the first
service a run needs; each service gets SIGTERM when the executor ends, however it ends (its
parent is the fork server, which lives while any of them does, so PDEATHSIG cannot say)."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import sys
import threading
from pathlib import Path

# What every local service imports (seft_services.backends.transformers_lm and the Llama models
# the examples use); grpc is left out: it is imported after the fork, so no gRPC state is forked.
PRELOAD = ["torch", "transformers.modeling_utils", "transformers.models.auto.modeling_auto",
           "transformers.models.llama.modeling_llama", "seft_services.backends.transformers_lm"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def start(argv: list[str], log: Path, env: dict[str, str]) -> multiprocessing.Process:
    """`seft ARGV` in a forked child whose stdout and stderr go to `log`, with environment `env`."""
    proc = _context.Process(target=_main, args=(argv, str(log), env, os.getpid()), name=f"seft {' '.join(argv[:2])}")
    proc.start()
    return proc


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


def _main(argv: list[str], log: str, env: dict[str, str], executor: int) -> None:
    _end_with(executor)
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # line-buffered: the log shows progress as it happens
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from seft.cli import main

    sys.exit(main(argv))
