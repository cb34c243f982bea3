"""The local executor starts trainings and its services' fork server with Popen (fork, then exec,
with PDEATHSIG set in between for trainings) while its gRPC channels are open. With gRPC's fork handlers on, the forked child
could crash before exec (grpc/grpc#43055: 13 of 300 spawns here); seft turns them off."""

from __future__ import annotations

import os
import subprocess

import pytest

from seft.client import CriticClient
from seft.executors.local import _die_with_parent
from seft_services.backends.critics import RuleCritic
from seft_services.server import Server

pytestmark = pytest.mark.integration


def test_children_spawned_while_channels_are_open_all_start():
    assert os.environ["GRPC_ENABLE_FORK_SUPPORT"] == "false"
    srv = Server({"critic": RuleCritic("seft.tasks.sorting:score")}).start()
    prompt = [{"role": "user", "content": "Sort ascending : 2 1"}]
    try:
        with CriticClient(srv.endpoint) as client:
            codes = []
            for i in range(300):
                codes.append(subprocess.run(["true"], preexec_fn=_die_with_parent).returncode)
                if i % 10 == 0:  # the channel stays busy between spawns
                    assert client.score([(prompt, "1 2")]) == [1.0]
        assert codes == [0] * 300
    finally:
        srv.stop(grace=1)
