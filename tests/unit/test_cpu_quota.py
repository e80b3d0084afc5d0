"""The server's torch/ONNX threads follow the container's CPU quota, not the node's cores.

Each test builds a fake ``/sys/fs/cgroup`` and ``/proc/self/cgroup`` under ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sentiflow.settings import cpu_quota
from sentiflow.settings.cpu_quota import available_cpus, cgroup_cpu_limit, threads_per_worker


@pytest.fixture
def node_of_64(monkeypatch):
    """A big node: 64 schedulable CPUs."""
    monkeypatch.setattr(cpu_quota, "_schedulable_cpus", lambda: 64)


def _tree(tmp_path: Path, files: dict[str, str], self_cgroup: str = "0::/\n") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(self_cgroup)
    return root, proc


@pytest.mark.parametrize(
    ("cpu_max", "limit", "cpus", "per_worker"),
    [
        ("200000 100000\n", 2.0, 2, 1),  # limits.cpu: 2, two workers: one thread each
        ("400000 100000\n", 4.0, 4, 2),
        ("150000 100000\n", 1.5, 1, 1),  # fractional: rounds down
        ("50000 100000\n", 0.5, 1, 1),  # never below one
        ("max 100000\n", None, 64, 32),  # no limit: the CPUs it may run on
    ],
)
def test_cgroup_v2_cpu_max(tmp_path, node_of_64, cpu_max, limit, cpus, per_worker):
    root, proc = _tree(tmp_path, {"cpu.max": cpu_max})
    assert cgroup_cpu_limit(root, proc) == limit
    assert available_cpus(root, proc) == cpus
    assert threads_per_worker(2, root, proc) == per_worker


def test_cgroup_v2_nested_cgroup_takes_the_tightest_ancestor(tmp_path, node_of_64):
    """Outside a cgroup namespace the process sits deeper; a limit on the pod's cgroup applies to it."""
    root, proc = _tree(
        tmp_path,
        {
            "cpu.max": "max 100000",
            "kubepods.slice/pod1/cpu.max": "300000 100000",
            "kubepods.slice/pod1/ctr/cpu.max": "max 100000",
        },
        self_cgroup="0::/kubepods.slice/pod1/ctr\n",
    )
    assert cgroup_cpu_limit(root, proc) == 3.0
    assert threads_per_worker(1, root, proc) == 3


@pytest.mark.parametrize(
    ("quota", "period", "limit"),
    [("300000", "100000", 3.0), ("-1", "100000", None), ("100000", "50000", 2.0)],
)
@pytest.mark.parametrize("controller", ["cpu,cpuacct", "cpu"])
def test_cgroup_v1_cfs_quota(tmp_path, node_of_64, controller, quota, period, limit):
    root, proc = _tree(
        tmp_path,
        {f"{controller}/cpu.cfs_quota_us": quota, f"{controller}/cpu.cfs_period_us": period},
        self_cgroup="4:cpu,cpuacct:/docker/abc\n",
    )
    assert cgroup_cpu_limit(root, proc) == limit
    assert available_cpus(root, proc) == (int(limit) if limit else 64)


def test_no_cgroup_files_falls_back_to_the_schedulable_cpus(tmp_path, node_of_64):
    root, proc = _tree(tmp_path, {})
    assert cgroup_cpu_limit(root, proc) is None
    assert threads_per_worker(4, root, proc) == 16
    assert threads_per_worker(0, tmp_path / "missing", tmp_path / "missing-too") == 64


def test_a_cpuset_smaller_than_the_quota_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_quota, "_schedulable_cpus", lambda: 2)
    root, proc = _tree(tmp_path, {"cpu.max": "800000 100000"})
    assert available_cpus(root, proc) == 2


def test_the_server_sizes_its_threads_from_the_quota(tmp_path, node_of_64, monkeypatch):
    """``serving.model.manager`` (torch.set_num_threads and ONNX intra-op threads) asks this module."""
    from sentiflow.settings.server import ServerSettings
    from serving.model import manager as model_manager

    root, proc = _tree(tmp_path, {"cpu.max": "200000 100000"})
    monkeypatch.setattr(cpu_quota, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpu_quota, "SELF_CGROUP", proc)
    assert model_manager._inference_threads(ServerSettings(workers=2)) == 1
    assert model_manager._inference_threads(ServerSettings(workers=1)) == 2
    assert model_manager._inference_threads(ServerSettings(workers=2, torch_threads=6)) == 6
