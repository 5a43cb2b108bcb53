"""`dockyard up --detach`, `status`, `down`: the embedded stack as a user runs it, two side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import yaml

from tests.builders import deployment_manifest


def dockyard(home, *args: str, stdin: bytes | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["DOCKYARD_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "dockyard", *args], env=env, input=stdin,
                          capture_output=True, timeout=timeout)


def test_two_stacks_run_side_by_side_and_keep_their_data(tmp_path):
    homes = [tmp_path / "one", tmp_path / "two"]
    try:
        for home in homes:
            started = dockyard(home, "up", "--detach")
            assert started.returncode == 0, started.stderr.decode() + started.stdout.decode()
            assert "dockyard is up" in started.stdout.decode()
            assert "local node: the " in started.stdout.decode()  # which driver, as the foreground `up` says
            assert (home / "stack.json").exists()

        stacks = [json.loads((home / "stack.json").read_text()) for home in homes]
        assert stacks[0]["nats_url"] != stacks[1]["nats_url"]
        assert stacks[0]["database_url"] != stacks[1]["database_url"]

        status = dockyard(homes[0], "status")
        # The node registered before `up` returned; the projector may take a moment to show it.
        for _ in range(60):
            if "1 ready of 1" in status.stdout.decode() or status.returncode != 0:
                break
            time.sleep(0.5)
            status = dockyard(homes[0], "status")
        assert status.returncode == 0, status.stdout.decode()
        lines = status.stdout.decode().splitlines()
        components = lines[2:lines.index("")]
        assert {line.split()[0]: line.split()[1] for line in components} == {
            "nats": "healthy", "postgres": "healthy", "api": "healthy", "projector": "healthy",
            "scheduler": "healthy", "controller": "healthy", "monitoring": "healthy", "node-agent": "healthy"}
        assert all(line.split()[3].endswith("/metrics") for line in components[2:])
        summary = dict(line.split(":", 1) for line in lines[lines.index("") + 1:])
        assert summary["nodes"].strip() == "1 ready of 1"
        assert summary["pods"].split(",")[0].split()[0] == "Pending"
        assert summary["alerts"].strip() == "none firing"
        assert summary["projections"].strip() == "caught up" or "events behind" in summary["projections"]

        manifest = yaml.safe_dump(deployment_manifest("only-in-one")).encode()
        applied = dockyard(homes[0], "apply", "-f", "-", stdin=manifest)
        assert applied.stdout.decode().strip() == "deployment/only-in-one created", applied.stderr.decode()
        assert dockyard(homes[1], "get", "deployments", "-o", "name").stdout == b""

        watcher = subprocess.Popen([sys.executable, "-m", "dockyard", "get", "deployments", "-w", "-o", "name"],
                                   env={k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
                                   | {"DOCKYARD_HOME": str(homes[0])},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert watcher.stdout.readline() == b"deployment/only-in-one\n"  # listed: now watching
        stopped = dockyard(homes[0], "down")
        assert stopped.returncode == 0 and not (homes[0] / "stack.json").exists()
        _, watch_error = watcher.communicate(timeout=60)
        assert (watcher.returncode, watch_error.decode()) == (1, "error: lost the connection to the stack\n")
        assert dockyard(homes[0], "status").returncode == 1
        assert dockyard(homes[1], "status").returncode == 0

        restarted = dockyard(homes[0], "up", "--detach")
        assert restarted.returncode == 0, restarted.stderr.decode()
        names = dockyard(homes[0], "get", "deployments", "-o", "name")
        assert names.stdout.decode().strip() == "deployment/only-in-one"
    finally:
        for home in homes:
            dockyard(home, "down")
