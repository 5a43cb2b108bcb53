"""The console on a real stack: a node's image reports reach its row live; `p` shows a container's previous run."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from dockyard.eventlog import subject_for
from dockyard.schemas.events import NodeImagesReported, NodeRegistered, NodeStatusChanged
from dockyard.schemas.manifests import ContainerImage
from dockyard.services.node_agent.node import capacity, node_manifest
from dockyard.tui.screens.logs import LogScreen
from dockyard.tui.screens.text import TextScreen
from tests.integration.test_console import SIZE, apply, console, platform, wait_until  # noqa: F401 (a fixture)
from tests.integration.test_logs_instances import pod
from tests.integration.test_pods_run import FAST_AGENT
from tests.integration.test_projector import wait_for_position

pytestmark = pytest.mark.slow
_replace = msgspec.structs.replace

NGINX = (ContainerImage(names=("docker.io/library/nginx:1.27",), size_bytes=70 << 20),)
REDIS = (ContainerImage(names=("docker.io/library/redis:7",), size_bytes=40 << 20),)


def image_names(app, key: str = "/n1") -> list[str]:
    node = app.stores["Node"].objects.get(key) or {}
    return [name for image in (node.get("status") or {}).get("images", []) for name in image["names"]]


async def test_a_nodes_image_reports_reach_its_row_live(eventlog, platform):
    node = node_manifest("n1", capacity("4", "8Gi", 110))
    await eventlog.append(subject_for("node", "", "n1"), NodeRegistered(node=node))
    await eventlog.append(subject_for("nodeimages", "", "n1"), NodeImagesReported(node_name="n1", images=NGINX))
    app = console(platform)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: image_names(app) == ["docker.io/library/nginx:1.27"],
                         what="the node's reported images")

        # A status carrying an older copy of the images: the report still wins, as every reader has it.
        stale = await eventlog.append(subject_for("node", "", "n1"),
                                      NodeStatusChanged(status=_replace(node.status, images=REDIS)))
        await wait_until(pilot, lambda: app.stores["Node"].position >= stale, what="the status folded")
        assert image_names(app) == ["docker.io/library/nginx:1.27"]

        report = await eventlog.append(subject_for("nodeimages", "", "n1"),
                                       NodeImagesReported(node_name="n1", images=NGINX + REDIS))
        await wait_until(pilot, lambda: image_names(app) == ["docker.io/library/nginx:1.27",
                                                             "docker.io/library/redis:7"],
                         what="the new report on the row")

        # describe reads the object from the api (the read model): once the projector has the report
        await asyncio.to_thread(wait_for_position, platform[1], "nodes", report)
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, TextScreen), what="the node described")
        assert app.screen.body.count("node.images_reported.v1") == 2  # its events: the reports too
        await pilot.press("escape", "y")
        await wait_until(pilot, lambda: isinstance(app.screen, TextScreen) and app.screen.title_text == "yaml node/n1",
                         what="the node's YAML")
        assert "docker.io/library/redis:7" in app.screen.body


def log_text(screen: LogScreen) -> list[str]:
    return [line.text for line in screen.query_one("#log").lines]


async def test_p_shows_the_previous_run_of_a_restarted_container(platform, services, tmp_path):
    services("node-agent", "--name", "n1", "--state-dir", str(tmp_path / "n1"), *FAST_AGENT)
    gate, ran = tmp_path / "go", tmp_path / "ran"
    # First run: say so, wait for the gate, fail (restartPolicy Always restarts it). Second run: stay up.
    script = ('if [ -f "$RAN" ]; then echo second run; exec sleep 1000; fi; touch "$RAN"; echo first run; '
              'while [ ! -f "$GATE" ]; do sleep 0.1; done; echo last words; exit 1')
    await apply(platform, pod("crash", script, GATE=str(gate), RAN=str(ran)))
    app = console(platform)
    async with app.run_test(size=SIZE) as pilot:
        pods = app.stores["Pod"]
        await wait_until(pilot, lambda: (pods.objects.get("default/crash", {}).get("status") or {}).get("phase")
                         == "Running", timeout=60, what="the pod running")
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log screen")
        screen = app.screen
        await wait_until(pilot, lambda: screen.lines == ["first run"], timeout=30, what="the first run's line")

        await pilot.press("p")  # no restart yet: nothing before this run, in kubectl's words
        missing = '[previous terminated container "main" in pod "crash" not found]'
        await wait_until(pilot, lambda: missing in log_text(screen), what="the no-previous-run line")
        assert "previous run" in str(screen.query_one("#log-title").render())
        await pilot.press("p")
        await wait_until(pilot, lambda: screen.lines == ["first run"], what="the current run again")

        gate.touch()  # the first run ends, the second begins; the follower reads on into it
        await wait_until(pilot, lambda: screen.lines == ["first run", "last words", "second run"], timeout=60,
                         what="the follower reaching the second run")
        await pilot.press("p")
        await wait_until(pilot, lambda: screen.lines == ["first run", "last words"], what="the previous run's lines")
        await pilot.press("p")
        await wait_until(pilot, lambda: screen.lines == ["second run"], what="the current run only")
        assert "following" in str(screen.query_one("#log-title").render())
