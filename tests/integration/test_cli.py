"""The CLI as users run it, against a real api, projector, NATS and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.builders import deployment_manifest, pod_manifest


def dockyard(env, *args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], env=env, input=stdin,
                          capture_output=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def refused(result: subprocess.CompletedProcess) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 1, (result.stdout, stderr)
    assert "Traceback" not in stderr
    assert stderr.startswith("error: ")
    return stderr


def write(tmp_path: Path, name: str, *documents: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def test_apply_get_describe_delete_round_trip(stack_env, tmp_path):
    manifest = write(tmp_path, "web.yaml", deployment_manifest("web", replicas=3), pod_manifest("solo"))

    assert ok(dockyard(stack_env, "apply", "-f", manifest)).splitlines() == [
        "deployment/web created", "pod/solo created"]
    assert ok(dockyard(stack_env, "apply", "-f", manifest)).splitlines() == [
        "deployment/web unchanged", "pod/solo unchanged"]

    stored = json.loads(ok(dockyard(stack_env, "get", "deployment", "web", "-o", "json")))
    assert list(stored)[:3] == ["apiVersion", "kind", "metadata"]
    assert stored["kind"] == "Deployment" and stored["apiVersion"] == "dockyard.io/v1"
    assert stored["metadata"]["generation"] == 1 and stored["metadata"]["uid"]
    assert stored["spec"]["replicas"] == 3
    assert stored["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "250m", "memory": "64Mi"}

    changed = write(tmp_path, "web2.yaml", deployment_manifest("web", replicas=5))
    assert ok(dockyard(stack_env, "apply", "-f", changed)).strip() == "deployment/web configured"
    stored = yaml.safe_load(ok(dockyard(stack_env, "get", "deploy", "web", "-o", "yaml")))
    assert (stored["spec"]["replicas"], stored["metadata"]["generation"]) == (5, 2)

    table = ok(dockyard(stack_env, "get", "deployments"))
    assert table.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table.splitlines()[1].split()[:2] == ["web", "0/5"]
    assert ok(dockyard(stack_env, "get", "pods", "-o", "name")).strip() == "pod/solo"
    listed = json.loads(ok(dockyard(stack_env, "get", "pods", "-A", "-o", "json")))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["solo"]

    described = ok(dockyard(stack_env, "describe", "deployment", "web"))
    assert "Replicas:           5 desired" in described
    assert "deployment.created.v1" in described and "deployment.updated.v1" in described

    assert ok(dockyard(stack_env, "delete", "deployment", "web")).strip() == 'deployment "web" deleted'
    assert 'deployments "web" not found' in refused(dockyard(stack_env, "get", "deployment", "web"))
    empty = dockyard(stack_env, "get", "deployments")
    assert empty.returncode == 0 and empty.stdout == b""
    assert empty.stderr.decode().strip() == "No resources found in default namespace."


def test_label_selectors_namespaces_and_stdin(stack_env):
    docs = [pod_manifest("a", "default"), pod_manifest("b", "team"), {**pod_manifest("c", "team"),
                                                                      "metadata": {"name": "c", "namespace": "team",
                                                                                   "labels": {"app": "db"}}}]
    ok(dockyard(stack_env, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs).encode()))

    def names(*args: str) -> list[str]:
        return ok(dockyard(stack_env, "get", "pods", "-o", "name", *args)).split()

    assert names() == ["pod/a"]
    assert names("-n", "team") == ["pod/b", "pod/c"]
    assert names("-A", "-l", "app=web") == ["pod/a", "pod/b"]
    assert names("-A", "-l", "app in (db,cache)") == ["pod/c"]
    assert names("-A", "-l", "app!=web") == ["pod/c"]
    assert names("-A", "-l", "!app") == []


def test_dry_run_changes_nothing(stack_env, tmp_path):
    manifest = write(tmp_path, "p.yaml", pod_manifest("dry"))
    assert ok(dockyard(stack_env, "apply", "--dry-run", "-f", manifest)).strip() == "pod/dry created (server dry run)"
    assert 'pods "dry" not found' in refused(dockyard(stack_env, "get", "pod", "dry"))


BAD_MANIFESTS = {
    "missing-name": (
        {"apiVersion": "dockyard.io/v1", "kind": "Pod", "metadata": {},
         "spec": {"containers": [{"name": "c", "image": "x"}]}},
        "metadata.name",
    ),
    "wrong-type": ({**deployment_manifest(), "spec": {**deployment_manifest()["spec"], "replicas": "three"}},
                   "spec.replicas"),
    "unknown-kind": ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}, "Service"),
    "unsupported-kubernetes-fields": (
        {"apiVersion": "apps/v1", **{k: v for k, v in deployment_manifest().items() if k != "apiVersion"},
         "spec": {**deployment_manifest()["spec"], "template": {
             "metadata": {"labels": {"app": "web"}},
             "spec": {"volumes": [{"name": "v", "hostPath": {"path": "/data"}}],
                      "containers": [{"name": "web", "image": "nginx", "lifecycle": {}}]}}}},
        "spec.template.spec.volumes[0].hostPath",
    ),
    "bad-quantity": (deployment_manifest(cpu="lots"),
                     'spec.template.spec.containers[0].resources.requests.cpu: "lots" is not a quantity'),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS), ids=list(BAD_MANIFESTS))
def test_bad_manifest_is_refused_with_the_field_named(stack_env, tmp_path, case):
    document, expected = BAD_MANIFESTS[case]
    stderr = refused(dockyard(stack_env, "apply", "-f", write(tmp_path, "bad.yaml", document)))
    assert expected in stderr


def test_unsupported_kubernetes_fields_are_all_listed(stack_env, tmp_path):
    document, _ = BAD_MANIFESTS["unsupported-kubernetes-fields"]
    stderr = refused(dockyard(stack_env, "apply", "-f", write(tmp_path, "k8s.yaml", document)))
    assert "spec.template.spec.volumes[0].hostPath" in stderr
    assert "spec.template.spec.containers[0].lifecycle" in stderr


def test_every_type_error_of_a_manifest_is_listed_one_per_line(stack_env, tmp_path):
    document = deployment_manifest()
    document["spec"]["replicas"] = "three"
    document["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "eighty"}]
    path = write(tmp_path, "bad.yaml", document)
    stderr = refused(dockyard(stack_env, "apply", "-f", path))
    assert stderr.splitlines() == [
        f'error: {path}: spec.replicas: expected int, got str "three"',
        f'error: {path}: spec.template.spec.containers[0].ports[0].containerPort: expected int, got str "eighty"',
    ], stderr


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"kind: Pod\nmetadata:\n  name: x\n" + b"  a: " + b"x" * (10 * 1024 * 1024) + b"\n", "MiB"),
        (b"kind: Pod\nmetadata:\n  name: \xff\xfe\n", "UTF-8"),
        (b"kind: Pod\nmetadata: [unclosed\n", "line"),
    ],
    ids=["10MB-document", "non-utf8", "yaml-syntax"],
)
def test_unreadable_input_is_refused_before_it_reaches_the_api(stack_env, tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert expected in refused(dockyard(stack_env, "apply", "-f", str(path)))


def test_every_command_is_recorded_accepted_or_refused(stack_env, tmp_path, database_url):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "ok.yaml", pod_manifest("fine"))))
    refused(dockyard(stack_env, "apply", "-f", write(tmp_path, "bad.yaml", deployment_manifest(cpu="lots"))))
    refused(dockyard(stack_env, "delete", "pod", "ghost"))

    engine = create_engine(database_url)
    deadline = time.monotonic() + 10
    while True:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT verb, kind, name, result, actor, reason FROM commands ORDER BY seq")).all()
        if len(rows) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    engine.dispose()
    assert [(r.verb, r.kind, r.name, r.result) for r in rows] == [
        ("apply", "Pod", "fine", "created"),
        ("apply", "Deployment", "web", "refused"),
        ("delete", "Pod", "ghost", "refused"),
    ]
    assert all(r.actor for r in rows)
    assert "is not a quantity" in rows[1].reason


def test_events_lists_the_log(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "p.yaml", pod_manifest("evt"))))
    events = ok(dockyard(stack_env, "events", "--kind", "pod")).splitlines()
    assert events[0].split() == ["SEQ", "AGE", "TYPE", "OBJECT", "ACTOR"]
    assert "pod.created.v1" in events[1] and "pod/default/evt" in events[1]
    assert ok(dockyard(stack_env, "events", "--since", "1h")).count("command.recorded.v2") == 1
    refused(dockyard(stack_env, "events", "--since", "yesterday"))


def test_watch_prints_changes_as_they_happen(stack_env, tmp_path):
    watcher = subprocess.Popen([sys.executable, "-m", "dockyard", "get", "pods", "-w", "-o", "name"],
                               env=stack_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # let it list and subscribe
        ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "p.yaml", pod_manifest("watched"))))
        line = watcher.stdout.readline().decode().strip()
        assert line == "pod/watched"
    finally:
        watcher.kill()
        watcher.wait()


def test_no_stack_is_a_clear_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DOCKYARD_HOME": str(tmp_path / "none"), "HOME": str(tmp_path)}
    stderr = refused(dockyard(env, "get", "pods"))
    assert "dockyard up" in stderr


async def test_list_pages_with_continue_tokens(stack_env, nats_server):
    from dockyard.client import ApiClient

    client = await ApiClient.connect(nats_server.url, actor="tester")
    try:
        for i in range(7):
            result = await client.apply(pod_manifest(f"p{i}"))
            assert result.result == "created"
        pages, token = [], ""
        while True:
            page = await client.list_page("pods", "default", limit=3, continue_token=token)
            pages.append([item["metadata"]["name"] for item in page.items])
            token = page.continue_token
            if not token:
                break
        assert pages == [["p0", "p1", "p2"], ["p3", "p4", "p5"], ["p6"]]
        everything, position = await client.list("pods", chunk=2)
        assert len(everything) == 7 and position > 0
    finally:
        await client.close()


def test_projections_status_and_rebuild_from_the_cli(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "p.yaml", pod_manifest("kept"))))
    status = ok(dockyard(stack_env, "projections", "status")).splitlines()
    assert status[0].split() == ["PROJECTION", "POSITION", "STREAM-LAST", "LAG"]
    rows = {line.split()[0]: line.split()[1:] for line in status[1:]}
    assert set(rows) == {"deployments", "pods", "nodes", "commands", "image_tags", "registries", "alerts"}
    assert rows["pods"][2] == "0"

    rebuilt = ok(dockyard(stack_env, "projections", "rebuild", "pods"))
    assert "swapped in" in rebuilt
    assert ok(dockyard(stack_env, "get", "pods", "-o", "name")).strip() == "pod/kept"
    assert 'unknown projection "nope"' in refused(dockyard(stack_env, "projections", "rebuild", "nope"))


def _no_stack_env(tmp_path: Path, nats_url: str) -> dict:
    return {"PATH": "/usr/bin:/bin", "DOCKYARD_HOME": str(tmp_path / "none"), "HOME": str(tmp_path),
            "DOCKYARD_NATS_URL": nats_url}


@pytest.mark.parametrize("command, url", [(("get", "pods"), "closed"), (("top", "nodes"), "closed"),
                                          (("top", "nodes"), "notaurl")])
def test_unreachable_nats_is_a_clear_error(tmp_path, command, url):
    from dockyard.servers import free_port

    url = f"nats://127.0.0.1:{free_port()}" if url == "closed" else url  # nobody listens there
    stderr = refused(dockyard(_no_stack_env(tmp_path, url), *command, timeout=30))
    assert stderr.startswith(f"error: cannot reach NATS at {url} (")
    assert len(stderr.splitlines()) == 1, stderr  # no nats-py error lines before it


def _wait_for_client(server, name: str) -> None:
    """Until a client called `name` holds a subscription on `server` (the follow is under way)."""
    import urllib.request

    for _ in range(300):
        with urllib.request.urlopen(f"{server.monitor_url}/connz?subs=1", timeout=5) as reply:
            connections = json.loads(reply.read())["connections"] or []
        if any(c.get("name") == name and c.get("subscriptions") for c in connections):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} never subscribed")


def test_follow_ends_with_an_error_when_nats_goes_away(tmp_path):
    import asyncio

    from dockyard.eventlog import EventLog
    from dockyard.servers import NatsServer

    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        async def streams() -> None:
            log = await EventLog.connect(server.url)
            await log.ensure_streams()
            await log.close()

        asyncio.run(streams())
        follower = subprocess.Popen([sys.executable, "-m", "dockyard", "events", "--follow"],
                                    env=_no_stack_env(tmp_path, server.url),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for_client(server, "dockyard-cli")
    finally:
        server.stop()
    _, stderr = follower.communicate(timeout=60)
    assert follower.returncode == 1, stderr.decode()
    assert stderr.decode().splitlines() == ["error: lost the connection to the stack"]


@pytest.mark.parametrize("service, flag", [("node-agent", "--driver"), ("monitoring", "--rules")])
def test_run_help_shows_the_services_flags(tmp_path, service, flag):
    shown = ok(dockyard(_no_stack_env(tmp_path, "nats://127.0.0.1:1"), "run", service, "--help"))
    assert shown.startswith(f"usage: dockyard run {service} ") and flag in shown


def test_up_refuses_a_negative_number_of_hollow_nodes(tmp_path):
    stderr = refused(dockyard({"PATH": "/usr/bin:/bin", "DOCKYARD_HOME": str(tmp_path / "home")},
                              "up", "--hollow-nodes", "-1"))
    assert stderr.strip() == "error: --hollow-nodes: must be 0 or more"
    assert not (tmp_path / "home").exists()


def test_a_pods_spec_cannot_change_but_its_labels_can(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "solo.yaml", pod_manifest("solo"))))
    edited = pod_manifest("solo", containers=[{"name": "main", "image": "busybox", "command": ["sleep", "5"]}])

    stderr = refused(dockyard(stack_env, "apply", "-f", write(tmp_path, "edited.yaml", edited)))
    assert 'Pod "solo" is invalid: spec: Forbidden' in stderr and "delete and re-create the pod" in stderr

    relabelled = pod_manifest("solo")
    relabelled["metadata"]["labels"]["tier"] = "web"
    assert ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "relabelled.yaml", relabelled))).strip() == \
        "pod/solo configured"
    stored = json.loads(ok(dockyard(stack_env, "get", "pod", "solo", "-o", "json")))
    assert stored["metadata"]["labels"]["tier"] == "web"
    assert stored["spec"]["containers"][0]["command"] == ["sleep", "3600"]


def test_a_service_logs_one_line_per_failed_connect(tmp_path):
    from dockyard.servers import free_port

    env = _no_stack_env(tmp_path, f"nats://127.0.0.1:{free_port()}")
    service = subprocess.Popen([sys.executable, "-m", "dockyard", "run", "scheduler"],
                               env=env | {"DOCKYARD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        lines = [service.stderr.readline().decode() for _ in range(4)]  # it retries for ever: take a few
    finally:
        service.kill()
        service.wait()
    failures = lines[1:]
    assert all(" WARNING dockyard.eventlog: NATS: " in line and "Connect call failed" in line
               for line in failures), lines
