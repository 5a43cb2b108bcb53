"""Exec probes under real runc that time out: the probe's command is killed inside the container, not left running."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_pods_run import ready
from tests.integration.test_runc import apply, container_id, get_pod, pod, runc_cluster  # noqa: F401
from tests.polling import wait_for
from tests.registry_fixtures import registry_factory  # noqa: F401
from tests.runc_fixtures import busybox_images  # noqa: F401

pytestmark = pytest.mark.slow


def commands_in(state: Path, cid: str) -> list[tuple[int, str]]:
    """(host pid, command name) of each process in the container's cgroup, zombies included (as `runc ps` sees)."""
    out = subprocess.run(["runc", "--root", str(state / "runc"), "ps", "--format", "json", cid],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:  # between runs of the container
        return []
    found = []
    for pid in json.loads(out.stdout or "null") or ():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone since runc listed it
        found.append((pid, stat[stat.index("(") + 1:stat.rindex(")")]))
    return found


@pytest.mark.parametrize("command", [["sleep", "30"], ["sh", "-c", "sleep 30; echo late"]],
                         ids=["the-command", "what-the-command-started"])
def test_a_timed_out_exec_probe_leaves_no_process_in_the_container(runc_cluster, command):
    env, image, start_agent, state = runc_cluster
    start_agent()
    # Readiness, not liveness: a failing readiness probe never restarts the container, which would hide a leak.
    apply(env, pod("slow", f"{image}:1.0", ["tail", "-f", "/dev/null"], restart_policy="Always",
                   readinessProbe={"exec": {"command": command}, "timeoutSeconds": 1, "periodSeconds": 1}))

    def running():
        p = get_pod(env, "slow")
        statuses = p["status"].get("containerStatuses") or [{}]
        return p if statuses[0].get("state") == "running" else None

    cid = container_id(wait_for(running, what="slow running"))
    probes: set[int] = set()

    def timed_out_probes():
        sleeping = [pid for pid, name in commands_in(state, cid) if name == "sleep"]
        # A probe starts only once the one before has ended: two `sleep`s at once would be one left behind.
        assert len(sleeping) <= 1, f"exec probes left running in the container: {sleeping}"
        probes.update(sleeping)
        return probes if len(probes) >= 3 else None

    wait_for(timed_out_probes, interval=0.2, what="three exec probes, each killed when it timed out")
    assert not ready(get_pod(env, "slow"))  # every probe failed: none of them can have been taken for a success
