"""The runc driver's OCI runtime spec from an image config and a pod spec (pure)."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.schemas.manifests import Pod
from dockyard.services.node_agent.bundle import (
    MIN_CPU_SHARES,
    Security,
    cgroup_resources,
    container_environment,
    process_args,
    runtime_spec,
    security_of,
    volume_problem,
)
from tests.builders import make_pod, pod_manifest

IMAGE = {"config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "MODE=image"],
                    "WorkingDir": "/srv"}}
BASE = {"ociVersion": "1.0.2", "process": {"terminal": True, "user": {"uid": 1000, "gid": 1000}, "args": ["x"],
                                           "consoleSize": {"height": 1, "width": 1}},
        "root": {"path": "rootfs"}, "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "network"}, {"type": "pid"}],
                  "resources": {"devices": [{"allow": False, "access": "rwm"}]}}}


def container(**fields):
    return make_pod(containers=[{"name": "main", "image": "app:1", **fields}]).spec.containers[0]


@pytest.mark.parametrize(("fields", "argv"), [
    ({}, ["/bin/app", "--serve"]),
    ({"args": ["--check", "$(MODE)"]}, ["/bin/app", "--check", "image"]),
    ({"command": ["sh", "-c"], "args": ["echo $(MODE)"]}, ["sh", "-c", "echo image"]),
    ({"command": ["/bin/other"]}, ["/bin/other"]),
], ids=["image-entrypoint-and-cmd", "args-replace-cmd", "command-and-args", "command-drops-cmd"])
def test_command_and_args_override_the_image_as_kubernetes_does(fields, argv):
    c = container(**fields)
    assert process_args(IMAGE, c, container_environment(IMAGE, c, "web-1", {})) == argv


def test_the_image_env_comes_first_then_hostname_ports_and_the_containers_own():
    c = container(env=[{"name": "MODE", "value": "pod-$(MODE)"}, {"name": "X", "value": "$(HOSTNAME)"}],
                  ports=[{"name": "http", "containerPort": 8080}])
    env = container_environment(IMAGE, c, "web-1", {"http": 8080})
    assert env == {"PATH": "/bin", "MODE": "pod-image", "HOSTNAME": "web-1", "DOCKYARD_PORT_HTTP": "8080",
                   "X": "web-1"}
    assert container_environment({}, container(), "p", {})["PATH"].startswith("/usr/local/sbin")


@pytest.mark.parametrize(("resources", "expected"), [
    ({}, {"cpu": {"shares": MIN_CPU_SHARES}, "pids": {"limit": 64}}),
    ({"requests": {"cpu": "500m"}}, {"cpu": {"shares": 512}, "pids": {"limit": 64}}),
    ({"limits": {"cpu": "250m", "memory": "64Mi"}},
     {"cpu": {"shares": 256, "quota": 25_000, "period": 100_000}, "pids": {"limit": 64},
      "memory": {"limit": 64 << 20, "swap": 64 << 20}}),
], ids=["none", "cpu-request", "limits"])
def test_resources_become_cgroup_limits(resources, expected):
    assert cgroup_resources(container(resources=resources), pids_limit=64) == expected


def test_the_spec_isolates_the_container_and_keeps_the_host_network():
    pod = make_pod("web-1", containers=[{"name": "main", "image": "app:1", "workingDir": "/data",
                                         "resources": {"limits": {"memory": "32Mi"}}}])
    spec = runtime_spec(BASE, IMAGE, pod, pod.spec.containers[0], host_ports={}, cgroups_path="dockyard/x",
                        host_files=("/etc/resolv.conf",))
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    assert spec["hostname"] == "web-1"
    assert spec["linux"]["cgroupsPath"] == "dockyard/x"
    assert spec["linux"]["resources"]["memory"]["limit"] == 32 << 20
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    process = spec["process"]
    assert process["terminal"] is False and "consoleSize" not in process
    assert process["cwd"] == "/data" and process["user"] == {"uid": 1000, "gid": 1000}
    assert process["noNewPrivileges"] is False and spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["mounts"][-1]["destination"] == "/etc/resolv.conf" and "ro" in spec["mounts"][-1]["options"]
    assert BASE["process"]["terminal"] is True  # the base is not changed


def test_security_settings_reach_the_spec():
    pod = make_pod("web-1")
    spec = runtime_spec(BASE, IMAGE, pod, pod.spec.containers[0], host_ports={}, cgroups_path="dockyard/x",
                        security=Security(read_only_root=True, allow_privilege_escalation=False, run_as_user=7,
                                          run_as_group=8))
    assert spec["root"]["readonly"] is True
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["user"] == {"uid": 7, "gid": 8}
    assert spec["process"]["cwd"] == "/srv"  # the image's, the pod giving none


def test_security_context_is_read_with_kubernetes_defaults():
    assert security_of(container()) == Security()
    locked = container(securityContext={"runAsUser": 5, "readOnlyRootFilesystem": True,
                                        "allowPrivilegeEscalation": False})
    assert security_of(locked) == Security(read_only_root=True, allow_privilege_escalation=False, run_as_user=5)
    assert security_of(container(securityContext={"runAsGroup": 3})).allow_privilege_escalation is True


def pod_with_volumes(mounts, volumes):
    """Not validated: the agent may see pods the API server's validation never saw (events written otherwise)."""
    manifest = pod_manifest("web-1", containers=[{"name": "main", "image": "app:1", "volumeMounts": mounts}],
                            volumes=volumes)
    return msgspec.convert(manifest, Pod)


def test_empty_dirs_are_mounted_from_the_pods_directory_or_memory():
    pod = pod_with_volumes([{"name": "data", "mountPath": "/data"}, {"name": "fast", "mountPath": "/fast",
                                                                     "readOnly": True}],
                           [{"name": "data", "emptyDir": {}}, {"name": "fast", "emptyDir": {"medium": "Memory"}}])
    c = pod.spec.containers[0]
    assert volume_problem(pod, c) is None
    spec = runtime_spec(BASE, IMAGE, pod, c, host_ports={}, cgroups_path="x", volume_dirs={"data": "/node/v/data"})
    data, fast = spec["mounts"][-2:]
    assert data == {"destination": "/data", "type": "bind", "source": "/node/v/data",
                    "options": ["rbind", "nosuid", "nodev", "rw"]}
    assert fast["type"] == "tmpfs" and fast["destination"] == "/fast" and "ro" in fast["options"]


@pytest.mark.parametrize(("mounts", "volumes", "says"), [
    ([{"name": "nope", "mountPath": "/x"}], [], "no emptyDir volume"),
    ([{"name": "v", "mountPath": "x"}], [{"name": "v", "emptyDir": {}}], "must be absolute"),
    ([{"name": "v", "mountPath": "/a/../b"}], [{"name": "v", "emptyDir": {}}], "must be absolute"),
    ([{"name": "v", "mountPath": "/x"}], [{"name": "v"}], "no emptyDir volume"),
    ([{"name": "v", "mountPath": "/x"}], [{"name": "v", "emptyDir": {"medium": "Disk"}}], "medium 'Disk'"),
    ([{"name": "/etc", "mountPath": "/x"}], [{"name": "/etc", "emptyDir": {}}], "must be a DNS-1123 label"),
    ([{"name": "../../..", "mountPath": "/x"}], [{"name": "../../..", "emptyDir": {}}], "must be a DNS-1123 label"),
    ([{"name": "", "mountPath": "/x"}], [{"name": "", "emptyDir": {}}], "must be a DNS-1123 label"),
], ids=["unknown", "relative", "dot-dot", "no-source", "medium", "name-absolute", "name-dot-dot", "name-empty"])
def test_bad_volume_mounts_are_named(mounts, volumes, says):
    pod = pod_with_volumes(mounts, volumes)
    assert says in volume_problem(pod, pod.spec.containers[0])
