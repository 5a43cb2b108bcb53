"""Real containers: time from `dockyard apply` to Running for N runc pods on one node, cold and warm image cache.

    sudo .venv/bin/python bench/containers.py [--pods 20]

Starts nats-server, PostgreSQL, Debian's docker-registry (holding a busybox image built with
umoci and pushed with skopeo), then the projector, api, scheduler, controller and one node agent
with `--driver runc`, each as its own process, in a temporary directory on free 127.0.0.1 ports.
It applies a Deployment of N replicas of a busybox shell loop and follows the event log until
all N pods are Running:

1. cold: the node's image cache is empty (pull, verify, unpack, run);
2. warm: the deployment deleted, a second one applied with the image in the cache.

It prints the machine, then one figure a line with its unit. Figures, not assertions: the goals
(issue 5) are under 30 s cold and under 10 s warm for 20 pods.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for bench.eventlog's helpers and the tests' image builders

import yaml  # noqa: E402

from bench.eventlog import (  # noqa: E402
    CLEANUP,
    cpu_model,
    mib,
    ram_kib,
    run_guarded,
    say,
    start_database,
    start_nats,
)
from dockyard.eventlog import EventLog  # noqa: E402
from dockyard.servers import free_port, tail  # noqa: E402
from dockyard.view import ClusterView  # noqa: E402

SUMMARY: list[str] = []
GOAL_COLD, GOAL_WARM = 30.0, 10.0
NODE = "bench-node"
LOOP = ["sh", "-c", "while true; do echo tick; sleep 1; done"]


def machine() -> None:
    runc = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.splitlines()
    say("== machine")
    say(f"cpu: {cpu_model()}, {os.cpu_count()} cores")
    say(f"ram: {mib(ram_kib())}")
    say(f"kernel: {platform.release()}; cgroup v1 at /sys/fs/cgroup: {Path('/sys/fs/cgroup/memory').is_dir()}")
    say(f"runc: {runc[0] if runc else 'missing'}")
    say(f"python: {platform.python_version()}")
    say(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews the figures)")
    say(f"date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    SUMMARY.append(f"machine: {cpu_model()} x {os.cpu_count()} cores, {mib(ram_kib())} RAM, "
                   f"{runc[0] if runc else 'no runc'}")


def start_service(name: str, env: dict[str, str], tmp: Path, *args: str) -> subprocess.Popen:
    port = free_port()
    with open(tmp / f"{name}.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dockyard", "run", name, "--metrics-port", str(port), *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    CLEANUP.append(lambda: (proc.terminate(), proc.wait(60)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited; its log:\n{tail(tmp / f'{name}.log')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not become ready")


def deployment(name: str, image: str, replicas: int) -> bytes:
    return yaml.safe_dump({"apiVersion": "dockyard.io/v1", "kind": "Deployment", "metadata": {"name": name},
                           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                                    "template": {"metadata": {"labels": {"app": name}}, "spec": {
                                        "terminationGracePeriodSeconds": 1,
                                        "containers": [{"name": "main", "image": image, "command": LOOP,
                                                        "resources": {"requests": {"cpu": "10m",
                                                                                   "memory": "8Mi"}}}]}}}}).encode()


def cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "dockyard", *args], env=env, input=stdin, capture_output=True,
                            timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"dockyard {' '.join(args)}: {result.stderr.decode()}")


async def until(view: ClusterView, app: str, count: int | None, timeout: float) -> float:
    """Wait for `count` Running pods of `app` (None: for none at all); the monotonic time it happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = [p for p in view.pods.values() if p.metadata.labels.get("app") == app]
        if count is None and not pods:
            return time.monotonic()
        if count is not None and sum(p.status.phase == "Running" for p in pods) >= count:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {app} ({count} running)")


async def measure(nats_url: str, env: dict[str, str], image: str, pods: int) -> None:
    log = await EventLog.connect(nats_url)
    view = ClusterView(kinds=("pod",))
    stop = asyncio.Event()
    follower = asyncio.create_task(view.follow(log, stop))
    await view.caught_up.wait()
    try:
        for run, name in (("cold", "cold"), ("warm", "warm")):
            started = time.monotonic()
            await asyncio.to_thread(cli, env, "apply", "-f", "-", stdin=deployment(name, image, pods))
            seconds = await until(view, name, pods, timeout=300) - started
            goal = GOAL_COLD if run == "cold" else GOAL_WARM
            line = f"apply -> {pods} pods Running, {run} image cache: {seconds:.2f} s (goal: < {goal:.0f} s)"
            say(line)
            SUMMARY.append(line)
            say(f"per pod, {run}: {seconds / pods * 1000:.0f} ms")
            deleting = time.monotonic()
            await asyncio.to_thread(cli, env, "delete", "deployment", name)
            seconds = await until(view, name, None, timeout=300) - deleting
            say(f"delete -> {pods} pods deleted, {run}: {seconds:.2f} s")
    finally:
        stop.set()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await log.close()


def run(args: argparse.Namespace, tmp: Path) -> None:
    from dockyard.services.node_agent.runc_driver import delete_all_containers, runc_problem
    from dockyard.services.node_agent.runtime import kill_recorded_processes
    from tests.registry_fixtures import RegistryServer
    from tests.runc_fixtures import BusyboxImages

    machine()
    problem = runc_problem()
    if problem:
        raise SystemExit(f"error: {problem}")
    say()
    say(f"== {args.pods} runc pods on one node")
    nats = start_nats(tmp)
    database_url = start_database(tmp)
    (tmp / "registry").mkdir()
    registry = RegistryServer(tmp / "registry")
    CLEANUP.append(registry.stop)
    registry.start()
    (tmp / "images").mkdir()
    BusyboxImages(tmp / "images").push("1.0", registry, "busybox:1.0")
    image = f"{registry.address}/busybox:1.0"

    env = dict(os.environ, DOCKYARD_NATS_URL=nats.url, DOCKYARD_DATABASE_URL=database_url)
    for name in ("projector", "api", "scheduler", "controller"):
        start_service(name, env, tmp)
    state = tmp / "node"
    CLEANUP.append(lambda: (kill_recorded_processes(state), delete_all_containers(state)))
    start_service("node-agent", env, tmp, "--name", NODE, "--driver", "runc", "--state-dir", str(state),
                  "--insecure-registry", registry.address, "--max-pods", str(max(args.pods * 2, 110)))
    asyncio.run(measure(nats.url, env, image, args.pods))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20, help="replicas to run (default 20)")
    return run_guarded(run, parser.parse_args(), "dy-bench-ctr-", SUMMARY)


if __name__ == "__main__":
    sys.exit(main())
