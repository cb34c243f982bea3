"""The local executor's services: forked from a preloaded fork server (seft.executors.forked),
each serves with its own log; a service that cannot start says so with its log; when the stage
ends, or the executor is killed, its services are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from seft.client import CriticClient, ReviserClient
from seft.errors import SeftError
from seft.executors.local import Context
from seft.labelling import Label
from seft.spec import Critic, Sampling
from seft.specfile import load_spec
from seft.stages import Ref, ServiceSpec, Stage
from seft.storage import open_store

from helpers import ROOT

pytestmark = pytest.mark.integration
PROMPT = [{"role": "user", "content": "Sort ascending : 2 1"}]
RULE = Critic(name="sort-rule", backend="rule", callable="seft.tasks.sorting:score")


def context(tmp_path: Path, services: dict) -> Context:
    spec = load_spec(ROOT / "examples" / "quickstart.yaml")
    store = open_store(f"file://{tmp_path}/runs", spec.name)
    return Context(spec, store, tmp_path, Stage("label", lambda ctx: {}, services=services), tmp_path / "out",
                   Console(quiet=True))


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("\nPPid:\t", 1)[1].split()[0])


def holders(path: Path) -> list[int]:
    """Pids with `path` open (a service holds its log as stdout)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")):
                out.append(int(pid))
        except OSError:
            pass
    return out


def test_forked_services_answer_log_and_are_gone_when_the_stage_ends(tmp_path, no_revise_reviser):
    ctx = context(tmp_path, {"reviser": ServiceSpec("reviser", Ref(None, str(no_revise_reviser))),
                             "critic": ServiceSpec("critic", critic=RULE)})
    logs = [tmp_path / "logs" / f"label-{name}.log" for name in ("reviser", "critic")]
    with ctx.services() as ep:
        with CriticClient(ep["critic"]) as critic, ReviserClient(ep["reviser"]) as reviser:
            assert critic.score([(PROMPT, "1 2"), (PROMPT, "2 1")]) == [1.0, 0.0]
            [revision] = reviser.revise([(PROMPT, "1 2")], Sampling(max_new_tokens=4, temperature=0.0))
            assert revision.label is Label.NO and (revision.text, revision.revised) == ("1 2", False)
        pids = [holders(log) for log in logs]
        assert all(len(p) == 1 for p in pids), pids
        for [pid] in pids:  # children of the fork server, not of this process
            server = parent(pid)
            assert server != os.getpid() and b"forkserver" in Path(f"/proc/{server}/cmdline").read_bytes()
    assert not any(alive(pid) for [pid] in pids)
    assert all(log.read_text() for log in logs), [log.read_text() for log in logs]


def test_a_service_that_cannot_start_is_named_with_its_exit_code_and_log(tmp_path):
    ctx = context(tmp_path, {"reviser": ServiceSpec("reviser", Ref(None, str(tmp_path / "no-such-model")))})
    with pytest.raises(SeftError) as err:
        with ctx.services():
            pass
    message = str(err.value)
    assert "service 'reviser' exited with" in message and "while starting" in message, message
    assert str(tmp_path / "logs" / "label-reviser.log") in message and "no-such-model" in message


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from test_forked_services import context, RULE
from seft.stages import ServiceSpec
from pathlib import Path
with context(Path({tmp!r}), {{"critic": ServiceSpec("critic", critic=RULE)}}).services() as ep:
    print(ep["critic"], flush=True)
    time.sleep(600)  # SIGKILLed before
"""


def test_the_services_die_with_a_killed_executor(tmp_path):
    tests = str(Path(__file__).parent)
    code = CHILD.format(tests=tests, tmp=str(tmp_path))
    executor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), tests])})
    assert executor.stdout.readline().startswith("127.0.0.1:")  # serving
    log = tmp_path / "logs" / "label-critic.log"
    [pid] = holders(log)
    executor.send_signal(signal.SIGKILL)
    executor.wait()
    deadline = time.monotonic() + 60  # the fork server sees the executor gone and exits; PDEATHSIG
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid)
