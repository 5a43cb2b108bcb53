"""The CLI nits a user trial found, on a real stack: several names, top NAME, logs deployment/NAME, --dry-run=..."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.builders import deployment_manifest, pod_manifest
from tests.integration.test_cli import dockyard, ok, refused, write
from tests.integration.test_pods_run import FAST_AGENT
from tests.polling import wait_for


def test_get_several_names_shows_those_found_and_an_error_for_each_missing(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "pods.yaml", pod_manifest("a"), pod_manifest("b"))))

    both = dockyard(stack_env, "get", "pods", "a", "b", "-o", "name")
    assert (both.returncode, both.stdout.decode().split(), both.stderr) == (0, ["pod/a", "pod/b"], b"")

    some = dockyard(stack_env, "get", "pods", "a", "ghost", "b", "phantom")
    assert some.returncode == 1
    table = some.stdout.decode().splitlines()
    assert table[0].split()[:2] == ["NAME", "READY"] and [line.split()[0] for line in table[1:]] == ["a", "b"]
    assert some.stderr.decode().splitlines() == ['error: pods "ghost" not found', 'error: pods "phantom" not found']

    none = refused(dockyard(stack_env, "get", "pods", "ghost", "phantom", "-o", "json"))
    assert none.splitlines() == ['error: pods "ghost" not found', 'error: pods "phantom" not found']
    assert "one NAME" in refused(dockyard(stack_env, "get", "pods", "a", "b", "-w"))


def test_apply_takes_kubectls_dry_run_values(stack_env, tmp_path):
    manifest = write(tmp_path, "p.yaml", pod_manifest("dry"))

    assert ok(dockyard(stack_env, "apply", "--dry-run=client", "-f", manifest)).strip() == "pod/dry created (dry run)"
    assert ok(dockyard(stack_env, "apply", "--dry-run=server", "-f", manifest)).strip() == \
        "pod/dry created (server dry run)"
    assert ok(dockyard(stack_env, "apply", "-f", manifest, "--dry-run")).strip() == "pod/dry created (server dry run)"
    assert 'pods "dry" not found' in refused(dockyard(stack_env, "get", "pod", "dry"))

    assert ok(dockyard(stack_env, "apply", "--dry-run=none", "-f", manifest)).strip() == "pod/dry created"
    assert ok(dockyard(stack_env, "apply", "--dry-run=client", "-f", manifest)).strip() == \
        "pod/dry configured (dry run)"

    bad = dockyard(stack_env, "apply", "--dry-run=sometimes", "-f", manifest)
    assert bad.returncode == 2 and b"argument --dry-run: invalid choice: 'sometimes'" in bad.stderr


@pytest.mark.parametrize("dry_run", ["--dry-run=client", "--dry-run=none"], ids=["client", "server"])
def test_type_and_value_errors_of_a_manifest_come_together_in_document_order(stack_env, tmp_path, dry_run):
    document = deployment_manifest()
    document["spec"]["replicas"] = "three"
    document["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"
    document["metadata"]["name"] = "Web"
    path = write(tmp_path, "bad.yaml", document)

    stderr = refused(dockyard(stack_env, "apply", dry_run, "-f", path))

    assert [line.split(": ")[2] for line in stderr.splitlines()] == [
        "metadata.name", "spec.replicas", "spec.template.spec.restartPolicy", "spec.template.spec.restartPolicy"]
    assert f'error: {path}: spec.replicas: expected int, got str "three"' in stderr.splitlines()


def test_top_a_name_that_is_not_there_is_not_found(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "p.yaml", pod_manifest("unscheduled"))))

    assert refused(dockyard(stack_env, "top", "pod", "ghost")) == 'error: pods "ghost" not found\n'
    assert refused(dockyard(stack_env, "top", "node", "ghost")) == 'error: nodes "ghost" not found\n'
    # There, but no node runs it (no scheduler here): no figures for it.
    assert "metrics not available" in refused(dockyard(stack_env, "top", "pod", "unscheduled"))


def test_top_a_name_shows_that_one(services, nats_server, database_url):
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)
    services("projector")
    services("api")
    services("scheduler")
    services("hollow-nodes", "--count", "2", "--heartbeat-interval", "0.5", "--usage-interval", "0.5")
    pods = [pod_manifest(name, nodeSelector={"kubernetes.io/hostname": "hollow-0"}) for name in ("idle", "other")]
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump_all(pods).encode()))

    def rows(*args: str) -> list[str] | None:
        result = dockyard(env, "top", *args, "--no-headers")
        return [line.split()[0] for line in result.stdout.decode().splitlines()] if result.returncode == 0 else None

    assert wait_for(lambda: rows("pod", "idle"), what="idle's figures") == ["idle"]
    assert wait_for(lambda: rows("node", "hollow-1"), what="hollow-1's figures") == ["hollow-1"]


@pytest.fixture
def cluster(services, nats_server, database_url, tmp_path):
    services("projector")
    services("api")
    services("scheduler")
    services("controller", "--tick", "0.5")
    services("node-agent", "--name", "n1", "--state-dir", str(tmp_path / "n1"), *FAST_AGENT)
    yield dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)
    from dockyard.services.node_agent.runtime import kill_recorded_processes

    kill_recorded_processes(tmp_path / "n1")


def test_logs_of_a_deployment_read_one_of_its_pods_and_say_which(cluster, tmp_path):
    env = cluster
    deployment = deployment_manifest("web", replicas=2)
    deployment["spec"]["template"]["spec"]["containers"] = [{
        "name": "web", "command": ["sh", "-c", "echo hello; exec sleep 3600"],
        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}}]
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    ok(dockyard(env, "apply", "-f", write(tmp_path, "web.yaml", deployment)))
    # The controller makes the pods after apply returns: wait for both before asking for "one of 2".
    names = wait_for(lambda: (found := ok(dockyard(env, "get", "pods", "-o", "name")).split()) and
                     len(found) == 2 and found, what="the deployment's 2 pods")

    def logged(target: str):
        result = dockyard(env, "logs", target)
        return result if result.returncode == 0 and result.stdout == b"hello\n" else None

    for target in ("deployment/web", "deploy/web"):
        said = wait_for(lambda: logged(target), what=f"logs {target}").stderr.decode()
        assert said.startswith("Found 2 pods, using pod/") and f"pod/{said.split('pod/')[-1].strip()}" in names, said
    chosen = said.split("pod/")[-1].strip()
    assert wait_for(lambda: logged(chosen), what=f"logs {chosen}").stderr == b""
    assert wait_for(lambda: logged(f"pod/{chosen}"), what=f"logs pod/{chosen}").stderr == b""

    assert refused(dockyard(env, "logs", "node/n1")) == \
        "error: cannot get logs of a node: give a pod or a deployment\n"
    assert 'deployments "ghost" not found' in refused(dockyard(env, "logs", "deployment/ghost"))
