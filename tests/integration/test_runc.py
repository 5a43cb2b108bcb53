"""The runc driver end to end: images from a real registry run under real runc, on real NATS and PostgreSQL."""

from __future__ import annotations

import json
import os

import httpx
import pytest
import yaml

from dockyard.servers import free_port
from dockyard.services.node_agent.cgroups import cgroup_sample, read_hierarchy
from tests.integration.test_pods_run import dockyard, ok, pods_of, ready
from tests.polling import wait_for
from tests.registry_fixtures import registry_factory  # noqa: F401
from tests.runc_fixtures import busybox_images, delete_runc_containers, runc_exec, runc_ids  # noqa: F401

pytestmark = pytest.mark.slow

FAST_RUNC_AGENT = ("--driver", "runc", "--heartbeat-interval", "0.5", "--backoff-base", "0.2", "--backoff-max", "1")


@pytest.fixture
def runc_cluster(services, nats_server, database_url, tmp_path, registry_factory, busybox_images):  # noqa: F811
    """The platform with one runc node `n1`; busybox:1.0 and 2.0 in a registry. Yields (env, image, start_agent)."""
    registry = registry_factory()
    for tag in ("1.0", "2.0"):
        busybox_images.push(tag, registry, f"busybox:{tag}")
    services("projector")
    services("api")
    services("scheduler")
    services("controller", "--node-grace", "30", "--tick", "0.5")
    env = dict(os.environ, DOCKYARD_NATS_URL=nats_server.url, DOCKYARD_DATABASE_URL=database_url)
    state = tmp_path / "n1"

    def start_agent(*flags: str):
        return services("node-agent", "--name", "n1", "--state-dir", str(state), "--insecure-registry",
                        registry.address, *FAST_RUNC_AGENT, *flags)

    yield env, f"{registry.address}/busybox", start_agent, state
    from dockyard.services.node_agent.runtime import kill_recorded_processes

    kill_recorded_processes(state)
    delete_runc_containers(state)


def apply(env, manifest: dict) -> None:
    ok(dockyard(env, "apply", "-f", "-", stdin=yaml.safe_dump(manifest).encode()))


def deployment(name: str, image: str, replicas: int, command: list[str]) -> dict:
    return {"apiVersion": "dockyard.io/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": image, "command": command,
                            "resources": {"requests": {"cpu": "50m", "memory": "16Mi"},
                                          "limits": {"memory": "64Mi"}}}]}}}}


def pod(name: str, image: str, command: list[str], **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": container.pop("restart_policy", "Never"), "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "main", "image": image, "command": command, **container}]}}


def get_pod(env, name: str) -> dict:
    return json.loads(ok(dockyard(env, "get", "pod", name, "-o", "json")))


def running_ready(env, app: str, count: int, image: str):
    pods = pods_of(env, app)
    done = len(pods) == count and all(
        p["status"]["phase"] == "Running" and ready(p) and p["spec"]["containers"][0]["image"] == image
        for p in pods)
    return pods if done else None


def logs_with(env, pod_name: str, text: str) -> str | None:
    result = dockyard(env, "logs", pod_name)
    if result.returncode and b"is waiting to start" in result.stderr:
        return None  # not started yet: no lines, as kubectl answers
    logs = ok(result)
    return logs if text in logs else None


def container_id(p: dict) -> str:
    meta = p["metadata"]
    return f"{meta['namespace']}_{meta['name']}_{meta['uid']}_main"


LOOP = ["sh", "-c", 'while true; do echo "tick $HOSTNAME v$VERSION"; sleep 0.3; done']


def test_replicas_run_isolated_log_survive_an_agent_restart_and_roll_to_a_new_tag(runc_cluster):
    env, image, start_agent, state = runc_cluster
    agent = start_agent()
    apply(env, deployment("loop", f"{image}:1.0", 3, LOOP))
    pods = wait_for(lambda: running_ready(env, "loop", 3, f"{image}:1.0"), what="3 running replicas")

    for p in pods:
        name = p["metadata"]["name"]
        # the hostname is the pod name; VERSION comes from the image config
        wait_for(lambda: logs_with(env, name, f"tick {name} v1"), what="its logs")
        ps = runc_exec(state, container_id(p), "ps", "-o", "pid,args").splitlines()[1:]
        assert [line.split(None, 1)[0] for line in ps][0] == "1"
        assert all(any(word in line for word in ("sh -c", "sleep", "ps")) for line in ps), ps
        usage = cgroup_sample(read_hierarchy(), container_id(p))  # what the agent reports in dy_usage
        assert usage is not None and usage.memory_bytes > 0 and usage.cpu_seconds > 0
    runc_pids = {cid: c["pid"] for cid, c in runc_ids(state).items()}
    assert {container_id(p) for p in pods} <= set(runc_pids)

    agent.kill()  # the containers keep running without their agent
    ok(dockyard(env, "scale", "deployment", "loop", "--replicas", "2"))  # one pod goes while no agent is there
    wait_for(lambda: len(pods_of(env, "loop")) == 2, what="the deployment scaled down")
    start_agent()

    def adopted():
        now = pods_of(env, "loop")
        return now if all(ready(p) for p in now) and len(now) == 2 else None

    after = wait_for(adopted, what="the pods reported again by the new agent")
    for p in after:
        status = p["status"]["containerStatuses"][0]
        assert status.get("restartCount", 0) == 0
    kept = {container_id(p) for p in after}
    wait_for(lambda: set(runc_ids(state)) == kept, what="the scaled-down pod's container deleted")
    assert {cid: c["pid"] for cid, c in runc_ids(state).items()} == {cid: runc_pids[cid] for cid in kept}

    apply(env, deployment("loop", f"{image}:2.0", 3, LOOP))
    assert "successfully rolled out" in ok(dockyard(env, "rollout", "status", "deployment", "loop",
                                                    "--timeout", "120"))
    new = wait_for(lambda: running_ready(env, "loop", 3, f"{image}:2.0"), what="3 replicas of 2.0")
    name = new[0]["metadata"]["name"]
    wait_for(lambda: logs_with(env, name, f"tick {name} v2"), what="logs of 2.0")
    wait_for(lambda: set(runc_ids(state)) == {container_id(p) for p in new}, what="old containers deleted")
    bundles = {d.name.rsplit("_", 1)[0] for d in (state / "pods").iterdir()}
    assert len(bundles) == 3

    def node_images():  # what the scheduler's image-locality score reads
        node = json.loads(ok(dockyard(env, "get", "node", "n1", "-o", "json")))
        names = {n for held in node["status"].get("images", ()) for n in held["names"]}
        return names if {f"{image}:1.0", f"{image}:2.0"} <= names else None

    names = wait_for(node_images, what="the node reporting its images")
    assert sum(1 for n in names if n.startswith(f"{image}@sha256:")) == 2


def test_httpd_on_a_host_port_is_ready_through_its_probes(runc_cluster):
    env, image, start_agent, state = runc_cluster
    start_agent()
    port = free_port()
    apply(env, pod("web", f"{image}:1.0", ["httpd", "-f", "-p", str(port), "-h", "/www"], restart_policy="Always",
                   ports=[{"name": "http", "containerPort": port, "hostPort": port}],
                   readinessProbe={"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
                   livenessProbe={"exec": {"command": ["test", "-f", "/www/index.html"]}, "periodSeconds": 1}))
    wait_for(lambda: ready(get_pod(env, "web")), what="web Ready")
    response = httpx.get(f"http://127.0.0.1:{port}/index.html", timeout=5)
    assert response.status_code == 200 and response.text == "hello from runc\n"

    status = get_pod(env, "web")["status"]["containerStatuses"][0]
    assert status["hostPorts"] == {"http": port} and status.get("restartCount", 0) == 0


def test_exit_codes_oom_kills_and_a_missing_image_are_reported(runc_cluster):
    env, image, start_agent, state = runc_cluster
    start_agent()
    apply(env, pod("three", f"{image}:1.0", ["sh", "-c", "exit 3"]))
    apply(env, pod("clean", f"{image}:1.0", ["true"]))
    apply(env, pod("hog", f"{image}:1.0", ["sh", "-c", "echo eating; exec dd if=/dev/zero of=/dev/null bs=64M"],
                   resources={"limits": {"memory": "16Mi"}}))
    apply(env, pod("ghost", f"{image}:9.9", ["true"]))
    host = pod("host", "", ["sh", "-c", "test -d /proc/1 && exit 4"])
    del host["spec"]["containers"][0]["image"]  # no image: a host process, as under the process driver
    apply(env, host)
    locked = pod("locked", f"{image}:1.0", ["sh", "-c", "id -u; touch /x 2>/dev/null || echo root-read-only; "
                                                          "echo kept > /scratch/f && cat /scratch/f"],
                 securityContext={"runAsUser": 65534, "readOnlyRootFilesystem": True,
                                  "allowPrivilegeEscalation": False},
                 volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}])
    locked["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    apply(env, locked)

    def terminated(name: str):
        status = (get_pod(env, name)["status"].get("containerStatuses") or [{}])[0]
        return status if status.get("state") == "terminated" else None

    assert terminated_as(wait_for(lambda: terminated("three"), what="three ended")) == (3, "Error")
    assert terminated_as(wait_for(lambda: terminated("clean"), what="clean ended")) == (0, "Completed")
    assert terminated_as(wait_for(lambda: terminated("hog"), what="hog ended")) == (137, "OOMKilled")
    assert terminated("hog")["signal"] == 9 and "signal" not in terminated("three")
    assert terminated_as(wait_for(lambda: terminated("host"), what="host ended")) == (4, "Error")
    assert get_pod(env, "three")["status"]["phase"] == "Failed"
    assert get_pod(env, "clean")["status"]["phase"] == "Succeeded"
    assert terminated_as(wait_for(lambda: terminated("locked"), what="locked ended")) == (0, "Completed")
    assert ok(dockyard(env, "logs", "locked")).split() == ["65534", "root-read-only", "kept"]

    stubborn = pod("stubborn", f"{image}:1.0", ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 1; done"])
    apply(env, stubborn)
    wait_for(lambda: logs_with(env, "stubborn", "up"), what="stubborn running")
    stubborn_id = container_id(get_pod(env, "stubborn"))
    assert stubborn_id in runc_ids(state)
    ok(dockyard(env, "delete", "pod", "stubborn"))  # SIGTERM is ignored: SIGKILL after the grace period
    # The container goes from runc first, then its bundle and the pod's directory.
    wait_for(lambda: stubborn_id not in runc_ids(state)
             and not any(d.name.startswith("default_stubborn_") for d in (state / "pods").iterdir()),
             what="stubborn killed, deleted and its directory removed")

    def pull_failed():
        status = (get_pod(env, "ghost")["status"].get("containerStatuses") or [{}])[0]
        return status if status.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    ghost = wait_for(pull_failed, what="ghost waiting on its image")
    assert ghost.get("message"), ghost  # the cause, where `get -o yaml` and describe show it, not in its logs
    assert dockyard(env, "logs", "ghost").stderr.decode().strip().endswith(
        'container "main" in pod "ghost" is waiting to start: trying and failing to pull image')


def terminated_as(status: dict) -> tuple[int, str]:
    return status["exitCode"], status["reason"]


def test_top_shows_a_runc_pods_usage_read_from_its_cgroup(runc_cluster):
    from tests.integration.test_top import millicores, wait_for_rows

    env, image, start_agent, state = runc_cluster
    agent = start_agent("--usage-interval", "0.5")
    # 8 MiB held in a shell variable (anonymous memory: in the working set), then a busy loop.
    apply(env, pod("spin", f"{image}:1.0", ["sh", "-c", "x=$(head -c 8388608 /dev/zero | tr '\\000' a); "
                                                          "while :; do :; done"],
                   resources={"requests": {"cpu": "200m", "memory": "32Mi"}}))

    def busy_and_holding(rows) -> bool:
        return "spin" in rows and millicores(rows["spin"][0]) > 100 and int(rows["spin"][1].removesuffix("Mi")) >= 8

    wait_for_rows(env, busy_and_holding, "pods", timeout=90)
    # Logged as the driver prepared, before it ran any pod: which hierarchy the figures came from.
    assert "runc driver: cgroup v" in agent.log_path.read_text()
