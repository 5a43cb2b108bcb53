"""The runc driver's small parts: refusing to start without runc or root, where its cgroups are, OOM counts."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from dockyard.services.node_agent.runc_driver import (
    CGROUP_ROOT,
    RuncUnavailable,
    check_runc,
    container_cgroup,
    oom_kills,
)


def test_refuses_without_root():
    if shutil.which("runc") is None or shutil.which("skopeo") is None or shutil.which("umoci") is None:
        pytest.skip("runc is not installed")
    with pytest.raises(RuncUnavailable, match="must run as root"):
        check_runc(euid=1000)


def test_the_agent_refuses_to_start_without_runc_with_a_clear_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dockyard", "run", "node-agent", "--name", "n1", "--driver",
                             "runc", "--state-dir", str(tmp_path)],
                            env={"PATH": str(tmp_path), "DOCKYARD_NATS_URL": "nats://127.0.0.1:1"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "error: the runc driver needs runc on PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_containers_cgroup_is_under_the_agents_own(tmp_path):
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("4:memory:/sandbox/a1\n2:cpuacct:/\n1:cpu:/\n")
    expected = CGROUP_ROOT / "memory/sandbox/a1/dockyard/ns_p_u_c"
    assert container_cgroup("memory", "ns_p_u_c", str(proc_cgroup)) == expected
    assert container_cgroup("cpuacct", "x", str(proc_cgroup)) == CGROUP_ROOT / "cpuacct/dockyard/x"


def test_oom_kills_are_read_from_memory_oom_control(tmp_path):
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert oom_kills(tmp_path) == 2
    assert oom_kills(tmp_path / "gone") == 0


def test_dockyard_up_picks_runc_only_where_it_works(monkeypatch, tmp_path):
    from dockyard.stack import local_node_driver, service_arguments

    monkeypatch.setenv("PATH", str(tmp_path))  # no runc on it
    driver, why = local_node_driver()
    assert driver == "process" and "needs runc on PATH" in why
    arguments = service_arguments(tmp_path, 0, node_driver="runc")["node-agent"]
    assert arguments[arguments.index("--driver") + 1] == "runc"
