"""The runc driver's small parts: refusing to start without runc or root, ports, probes, leftovers."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys

import pytest

from dockyard.services.node_agent.images import ImageCache
from dockyard.services.node_agent.process_driver import ProcessDriverConfig
from dockyard.services.node_agent import runc_driver
from dockyard.services.node_agent.runc_driver import (
    Runc,
    RuncDriver,
    RuncProcess,
    RuncUnavailable,
    check_runc,
)
from dockyard.services.node_agent.runtime import proc_stat
from dockyard.services.node_agent.status import CREATE_CONTAINER_CONFIG_ERROR
from tests.conftest import require
from tests.builders import make_pod


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


def test_dockyard_up_picks_runc_only_where_it_works(monkeypatch, tmp_path):
    from dockyard.stack import local_node_driver, service_arguments

    monkeypatch.setenv("PATH", str(tmp_path))  # no runc on it
    driver, why = local_node_driver()
    assert driver == "process" and "needs runc on PATH" in why
    arguments = service_arguments(tmp_path, 0, node_driver="runc")["node-agent"]
    assert arguments[arguments.index("--driver") + 1] == "runc"


def runc_pod(driver: RuncDriver, name: str, port: int = 80):
    pod = make_pod(name, containers=[{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": port}]}])
    return driver.worker_for(pod, lambda: None)


async def test_a_second_pod_on_a_taken_host_port_waits_until_the_holder_goes(tmp_path, monkeypatch):
    # runc containers share the host's network: the second would only crash-loop on EADDRINUSE.
    monkeypatch.setattr(runc_driver, "PORT_RETRY_SECONDS", 0.01)
    driver = RuncDriver(ProcessDriverConfig(tmp_path / "state"), logs=None, images=ImageCache(tmp_path / "images"))
    first, second = runc_pod(driver, "web-1"), runc_pod(driver, "web-2")
    assert first.containers[0]._config_problem() is None
    assert second.containers[0]._config_problem() == "host port 80 is in use by default/web-1"
    assert runc_pod(driver, "api", port=8080).containers[0]._config_problem() is None

    waiting = second.containers[0]
    second.dir.mkdir(parents=True)  # as the pod's start makes it
    before = waiting.status
    task = asyncio.create_task(waiting._wait_for_ports())
    await asyncio.sleep(0.05)
    assert not task.done()
    assert (waiting.status.state, waiting.status.reason) == ("waiting", CREATE_CONTAINER_CONFIG_ERROR)
    assert waiting.status.message == "host port 80 is in use by default/web-1"
    assert not waiting.tails["stderr"].path.exists()  # it never ran: no lines (kubectl: "is waiting to start")

    driver.ports.release(waiting.record.host_ports.values(), second.port_holder)
    assert driver.ports.holder(80) == "default/web-1"  # the waiting pod's end does not free the holder's port
    driver.ports.release(first.containers[0].record.host_ports.values(), first.port_holder)
    await asyncio.wait_for(task, 10)
    assert driver.ports.holder(80) == "default/web-2" and waiting.status == before


async def test_a_signal_is_sent_by_runc_kill_in_the_background(tmp_path):
    require(shutil.which("runc") is not None, "runc is not installed")
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        process = RuncProcess(sleeper.pid, proc_stat(sleeper.pid)[1], None, Runc(tmp_path / "runc"), "no-such")
        process.signal(signal.SIGTERM)
        kills = set(runc_driver._KILLS)
        assert len(kills) == 1 and not kills.pop().done()  # scheduled: the agent's loop did not wait for runc
        await asyncio.wait_for(asyncio.gather(*runc_driver._KILLS), 30)  # runc refuses the unknown id quietly
        assert not runc_driver._KILLS and process.running()
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_image_gc_runs_in_the_background_one_at_a_time(tmp_path):
    driver = RuncDriver(ProcessDriverConfig(tmp_path / "state"), logs=None, images=ImageCache(tmp_path / "images"))
    async with driver.images._lock:  # as a pull holds it, for minutes
        driver.collect_garbage_soon()  # a pod's stop does not wait for it
        gc = driver._gc
        driver.collect_garbage_soon()
        assert driver._gc is gc and not gc.done()
    await asyncio.wait_for(gc, 30)
    driver.collect_garbage_soon()
    assert driver._gc is not gc
    await asyncio.wait_for(driver._gc, 30)
