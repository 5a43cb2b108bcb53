"""A container's OCI bundle: its root filesystem unpacked with umoci, and its runtime spec (generated purely).

The spec starts from the one umoci derives from the image (user resolved against the image's
/etc/passwd, default mounts, a deny-all device cgroup) and applies the pod spec the way kubelet
does: command/args over entrypoint/cmd, env, workingDir, resources as cgroup limits, the pod's
hostname, PID/IPC/UTS/mount namespaces of its own and the host's network, emptyDir volumes,
securityContext (user, read-only root, no privilege escalation).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.manifests import DNS_LABEL
from dockyard.schemas.manifests import Container, Pod
from dockyard.schemas.quantity import cpu_millis, memory_bytes
from dockyard.services.node_agent.expansion import expand, port_variables

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
MIN_CPU_SHARES = 2  # the kernel's floor, as kubelet uses for pods without a cpu request
DEFAULT_PIDS_LIMIT = 4096
NAMESPACES = ("pid", "ipc", "uts", "mount")  # network: the host's (hostNetwork) for now
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")  # the host network's names, read-only inside
UNPACK_TIMEOUT = 300.0


class BundleError(Exception):
    """The bundle could not be made (the container waits with CreateContainerConfigError)."""


@dataclass(frozen=True)
class Security:
    """The parts of a container's securityContext the runtime applies."""

    read_only_root: bool = False
    allow_privilege_escalation: bool = True
    run_as_user: int | None = None
    run_as_group: int | None = None


def security_of(container: Container) -> Security:
    """From the container's securityContext; the Kubernetes defaults without one."""
    context = container.security_context
    if context is None:
        return Security()
    allow = context.allow_privilege_escalation
    return Security(read_only_root=context.read_only_root_filesystem,
                    allow_privilege_escalation=True if allow is None else allow,
                    run_as_user=context.run_as_user, run_as_group=context.run_as_group)


# ---------------------------------------------------------------- pure: the runtime spec


def image_settings(image_config: Mapping) -> Mapping:
    return image_config.get("config") or {}


def container_environment(image_config: Mapping, container: Container, pod_name: str,
                          host_ports: Mapping[str, int]) -> dict[str, str]:
    """The image's Env, then HOSTNAME and the port variables, then the container's env, each expanded in order."""
    env: dict[str, str] = {}
    for item in image_settings(image_config).get("Env") or ():
        name, _, value = item.partition("=")
        env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = pod_name
    env.update(port_variables(container, host_ports))
    for var in container.env:
        env[var.name] = expand(var.value, env)
    return env


def process_args(image_config: Mapping, container: Container, env: Mapping[str, str]) -> list[str]:
    """Kubernetes' rule: command replaces the entrypoint (and drops cmd); args alone replace cmd.
    Only what the pod gives is `$(VAR)`-expanded, as in kubelet."""
    settings = image_settings(image_config)
    entrypoint, cmd = list(settings.get("Entrypoint") or ()), list(settings.get("Cmd") or ())
    ours = lambda parts: [expand(p, env) for p in parts]  # noqa: E731
    if container.command:
        return ours((*container.command, *container.args))
    if container.args:
        return entrypoint + ours(container.args)
    return entrypoint + cmd


def cgroup_resources(container: Container, pids_limit: int = DEFAULT_PIDS_LIMIT) -> dict:
    """requests.cpu -> cpu shares, limits.cpu -> CFS quota, limits.memory -> memory (no swap), and a pids cap."""
    requests, limits = container.resources.requests, container.resources.limits
    cpu_request = requests.get("cpu", limits.get("cpu"))
    shares = max(cpu_millis(cpu_request) * 1024 // 1000, MIN_CPU_SHARES) if cpu_request is not None else MIN_CPU_SHARES
    resources: dict = {"cpu": {"shares": shares}, "pids": {"limit": pids_limit}}
    if "cpu" in limits:
        resources["cpu"].update(quota=max(cpu_millis(limits["cpu"]) * CPU_PERIOD_US // 1000, 1000),
                                period=CPU_PERIOD_US)
    if "memory" in limits:
        limit = memory_bytes(limits["memory"])
        resources["memory"] = {"limit": limit, "swap": limit}
    return resources


def volume_problem(pod: Pod, container: Container) -> str | None:
    """Why the container's volumeMounts cannot be made (None: they can)."""
    volumes = {volume.name: volume for volume in pod.spec.volumes}
    for mount in container.volume_mounts:
        # The name becomes a directory under the pod's (made world-writable, bind-mounted): the API server
        # refuses anything but a DNS-1123 label, and so does the agent, for events written by other means.
        if not DNS_LABEL.matches(mount.name):
            return f"volumeMounts {mount.name!r}: the name must be a DNS-1123 label"
        volume = volumes.get(mount.name)
        if volume is None or volume.empty_dir is None:
            return f"volumeMounts {mount.name!r}: the pod has no emptyDir volume of that name"
        if not mount.mount_path.startswith("/") or ".." in mount.mount_path.split("/"):
            return f"volumeMounts {mount.name!r}: mountPath {mount.mount_path!r} must be absolute, without '..'"
        if volume.empty_dir.medium not in ("", "Memory"):
            return f"volumes {mount.name!r}: emptyDir medium {volume.empty_dir.medium!r} must be \"\" or \"Memory\""
    return None


def volume_mounts(pod: Pod, container: Container, volume_dirs: Mapping[str, str]) -> list[dict]:
    """emptyDir mounts: a directory of the pod's on the node (shared by its containers, kept across restarts),
    or with medium Memory a tmpfs of the container's own. Assumes volume_problem() found none."""
    volumes = {volume.name: volume for volume in pod.spec.volumes}
    mounts = []
    for mount in container.volume_mounts:
        access = "ro" if mount.read_only else "rw"
        if volumes[mount.name].empty_dir.medium == "Memory":
            mounts.append({"destination": mount.mount_path, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777", access]})
        else:
            mounts.append({"destination": mount.mount_path, "type": "bind", "source": volume_dirs[mount.name],
                           "options": ["rbind", "nosuid", "nodev", access]})
    return mounts


def runtime_spec(base: Mapping, image_config: Mapping, pod: Pod, container: Container, *,
                 host_ports: Mapping[str, int], cgroups_path: str, security: Security = Security(),
                 host_files: Sequence[str] = (), volume_dirs: Mapping[str, str] | None = None,
                 pids_limit: int = DEFAULT_PIDS_LIMIT) -> dict:
    """The bundle's config.json: `base` (umoci's, from the image) with the pod spec applied."""
    spec = copy.deepcopy(dict(base))
    env = container_environment(image_config, container, pod.metadata.name, host_ports)
    process = spec.setdefault("process", {})
    process.update(terminal=False, args=process_args(image_config, container, env),
                   env=[f"{k}={v}" for k, v in env.items()],
                   cwd=container.working_dir or image_settings(image_config).get("WorkingDir") or "/",
                   noNewPrivileges=not security.allow_privilege_escalation)
    process.pop("consoleSize", None)
    user = process.setdefault("user", {"uid": 0, "gid": 0})
    if security.run_as_user is not None:
        user["uid"] = security.run_as_user
    if security.run_as_group is not None:
        user["gid"] = security.run_as_group
    spec["hostname"] = pod.metadata.name
    spec["root"] = {"path": "rootfs", "readonly": security.read_only_root}
    spec["mounts"] = [*spec.get("mounts", ()), *({"destination": path, "type": "bind", "source": path,
                                                   "options": ["rbind", "ro", "nosuid", "nodev"]}
                                                  for path in host_files),
                      *volume_mounts(pod, container, volume_dirs or {})]
    linux = spec.setdefault("linux", {})
    linux["namespaces"] = [{"type": kind} for kind in NAMESPACES]
    linux["cgroupsPath"] = cgroups_path
    resources = linux.setdefault("resources", {})
    resources.setdefault("devices", [{"allow": False, "access": "rwm"}])
    resources.update(cgroup_resources(container, pids_limit))
    return spec


# ---------------------------------------------------------------- I/O: unpacking


async def unpack(layout: Path, ref: str, bundle: Path, security: Security) -> dict:
    """Unpack the image into `bundle` (rootfs/ and umoci's config.json), made safe; umoci's spec."""
    proc = await asyncio.create_subprocess_exec("umoci", "unpack", "--image", f"{layout}:{ref}", str(bundle),
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), UNPACK_TIMEOUT)
    except asyncio.TimeoutError:
        raise BundleError("unpacking the image timed out") from None
    finally:
        if proc.returncode is None:  # timed out, or the pod went away while unpacking
            proc.kill()
            await asyncio.shield(proc.wait())
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise BundleError(f"unpacking the image failed: {lines[-1] if lines else proc.returncode}")
    await asyncio.to_thread(harden_rootfs, bundle / "rootfs", not security.allow_privilege_escalation)
    return json.loads((bundle / "config.json").read_text())


def harden_rootfs(rootfs: Path, strip_setid: bool) -> list[str]:
    """Remove device nodes an image brought (the device cgroup denies them anyway) and, when privilege
    escalation is not allowed, setuid/setgid bits. Never follows a symlink. The paths changed."""
    changed = []
    for directory, dirnames, filenames in os.walk(rootfs, followlinks=False):
        for name in (*dirnames, *filenames):
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.unlink(path)
                changed.append(path)
            elif strip_setid and stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))
                changed.append(path)
    return changed


def existing_host_files() -> tuple[str, ...]:
    return tuple(path for path in HOST_FILES if os.path.isfile(path))


def write_spec(bundle: Path, spec: Mapping) -> None:
    (bundle / "config.json").write_text(json.dumps(spec))
