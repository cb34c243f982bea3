"""How many torch threads a training gets: the cores this process may use (its affinity, capped by
a container's CPU quota), shared out among the trainings that run at once. The cgroup files here
are written by the test (a double for /sys/fs/cgroup, whose real quota a test cannot set)."""

from __future__ import annotations

import os

import pytest

from seft.errors import SeftError
from seft.train import torch_threads, training_threads, usable_cores

AFFINITY = "affinity"  # the cores this process may use when the test runs (make test pins its workers)


@pytest.mark.parametrize("files, cores", [
    ({}, AFFINITY),                                                   # no cgroup files: the affinity
    ({"cpu.max": "max 100000\n"}, AFFINITY),                          # v2, no quota
    ({"cpu.max": "100000 100000\n"}, 1),                              # v2, one CPU
    ({"cpu.max": "50000 100000\n"}, 1),                               # half a CPU is still a thread
    ({"cpu.max": "6400000 100000\n"}, AFFINITY),                      # a quota above the affinity
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, AFFINITY),  # v1, no quota
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),     # v1, one CPU
    ({"cpu.max": "lots\n"}, AFFINITY),                               # not understood: no cap
    ({"cpu.max": "100000 0\n"}, AFFINITY),
])
def test_usable_cores_is_the_affinity_capped_by_the_cgroup_quota(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_cores(tmp_path) == (len(os.sched_getaffinity(0)) if cores == AFFINITY else cores)


def test_trainings_side_by_side_share_the_cores_and_each_gets_one_at_least():
    cores = usable_cores()
    assert training_threads(1) == cores
    assert training_threads(2) == max(1, cores // 2)
    assert training_threads(cores + 1) == 1


def test_a_training_process_takes_omp_num_threads_else_its_share_of_the_node():
    assert torch_threads({"OMP_NUM_THREADS": "3"}) == 3  # the executor's share, torchrun's 1, a user's
    assert torch_threads({}) == usable_cores()  # one process in a pod: its quota
    assert torch_threads({"LOCAL_WORLD_SIZE": str(usable_cores() + 1)}) == 1
    assert torch_threads({"LOCAL_WORLD_SIZE": "1", "OMP_NUM_THREADS": "1"}) == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_an_omp_num_threads_that_is_no_count_is_named(value):
    with pytest.raises(SeftError, match=f"OMP_NUM_THREADS '{value}': expected a number of threads"):
        torch_threads({"OMP_NUM_THREADS": value})


def test_omp_num_threads_may_be_openmps_list_of_counts_per_level():
    assert torch_threads({"OMP_NUM_THREADS": "2,1"}) == 2
