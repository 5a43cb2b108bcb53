"""The one place that knows the cgroup hierarchy: v1, v2 (unified) or hybrid; where runc puts a container; what it used.

Where a container's cgroup goes (`cgroups_path`, written into the bundle and read back by every
reader here) is runc's cgroupfs driver's rule (runc runs without --systemd-cgroup, which would
want a "slice:prefix:name" path instead):

- v1 and hybrid: the relative "dockyard/<id>", which runc puts under its own cgroup in each
  controller's hierarchy (libcontainer/cgroups/fs: mount point + /proc/self/cgroup's path). runc is
  the agent's child, so the containers are accounted inside the agent's cgroups.
- v2: the absolute "/dockyard/<id>". For a relative path runc would take the *parent* of its own
  cgroup (libcontainer/cgroups/fs2/defaultpath.go), because of v2's "no internal processes" rule:
  the agent's own cgroup holds the agent, so no controller can be enabled below it. That parent is
  whatever slice holds the agent (systemd's system.slice, a user session's user-N.slice), not ours
  and maybe holding processes itself. Under the root, runc needs only the root's subtree_control,
  and the root is exempt from that rule — as kubelet's cgroupfs driver does with /kubepods and
  Docker's with /docker.

Hybrid (v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified) is v1 to runc, as here.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.services.node_agent.usage import UsageSample

V1, V2, HYBRID, NONE = "v1", "v2", "hybrid", "none"
ROOT = Path("/sys/fs/cgroup")
PARENT = "dockyard"  # the containers' cgroups go under this one
UNIFIED = ""  # the key of the cgroup2 hierarchy, as /proc/self/cgroup's "0::/path" line has no controller
# What the bundle's limits need: memory, cpu shares and quota, pids; v1 counts CPU time in cpuacct.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
V2_CONTROLLERS = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class Hierarchy:
    """The cgroup hierarchy as the agent (and so runc, its child) sees it."""

    version: str  # V1, V2, HYBRID or NONE
    root: Path = ROOT
    mounts: dict[str, Path] = field(default_factory=dict)  # v1 controller (or UNIFIED) -> its mount point
    own: dict[str, str] = field(default_factory=dict)  # v1 controller (or UNIFIED) -> the agent's cgroup in it

    def describe(self) -> str:
        """What was found, for the agent's startup log line and its refusals."""
        if self.version == V2:
            return f"cgroup v2 at {self.root}"
        if self.version == HYBRID:
            return (f"cgroup v1 at {self.root} (hybrid: the cgroup v2 at {self.mounts[UNIFIED]} "
                    f"holds no controllers, runc uses v1)")
        if self.version == V1:
            return f"cgroup v1 at {self.root}"
        return f"no cgroup hierarchy at {self.root}"


# ---------------------------------------------------------------- pure: parsing and paths


def _unescape(path: str) -> str:
    """/proc/self/mounts writes a space, tab, newline or backslash in a path as an octal escape (\\040)."""
    for code in ("040", "011", "012", "134"):
        path = path.replace(f"\\{code}", chr(int(code, 8)))
    return path


def parse_mounts(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(mount point, filesystem type, options) of each line of /proc/self/mounts."""
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            entries.append((_unescape(parts[1]), parts[2], tuple(parts[3].split(","))))
    return entries


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/self/cgroup's `N:controllers:/path` lines: each v1 controller (and UNIFIED for `0::/path`) -> path."""
    own = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and not controllers:
            own[UNIFIED] = path
        for controller in filter(None, controllers.split(",")):
            own[controller] = path
    return own


def hierarchy_of(mounts_text: str, proc_cgroup_text: str, root: Path = ROOT) -> Hierarchy:
    """Which hierarchy `root` holds: v2 when a cgroup2 is mounted on it (the last mount on a point wins),
    hybrid when v1 controllers sit beside a cgroup2 below it, v1 with only v1 controllers."""
    entries = parse_mounts(mounts_text)
    own = parse_proc_cgroup(proc_cgroup_text)
    on_root = [fstype for point, fstype, _ in entries if Path(point) == root]
    if on_root and on_root[-1] == "cgroup2":
        return Hierarchy(V2, root, {UNIFIED: root}, own)
    mounts: dict[str, Path] = {}
    for point, fstype, options in entries:
        if not Path(point).is_relative_to(root) or Path(point) == root:
            continue
        if fstype == "cgroup":
            mounts.update({option: Path(point) for option in options if option in own or option in V1_CONTROLLERS})
        elif fstype == "cgroup2":
            mounts[UNIFIED] = Path(point)
    if not mounts.keys() - {UNIFIED}:
        return Hierarchy(NONE, root, mounts, own)
    return Hierarchy(HYBRID if UNIFIED in mounts else V1, root, mounts, own)


def cgroups_path(hierarchy: Hierarchy, container_id: str) -> str:
    """The bundle's linux.cgroupsPath for a container (why relative on v1, absolute on v2: the module's doc)."""
    return f"/{PARENT}/{container_id}" if hierarchy.version == V2 else f"{PARENT}/{container_id}"


def _parent_path(hierarchy: Hierarchy) -> str:
    return cgroups_path(hierarchy, "").rstrip("/")


def container_cgroup(hierarchy: Hierarchy, controller: str, container_id: str) -> Path:
    """The directory runc made for the container: in `controller`'s hierarchy on v1, the one unified on v2."""
    inner = cgroups_path(hierarchy, container_id)
    key = UNIFIED if hierarchy.version == V2 else controller
    mount = hierarchy.mounts.get(key, hierarchy.root / controller)
    if inner.startswith("/"):
        return mount / inner.lstrip("/")
    own = hierarchy.own.get(key, "/")
    if hierarchy.version == V2:
        own = os.path.dirname(own)  # runc's rule for a relative path on v2 (fs2/defaultpath.go)
    return mount / own.lstrip("/") / inner


def flat_keyed(text: str) -> dict[str, int]:
    """A cgroup "flat keyed" file (memory.events, cpu.stat, memory.stat, memory.oom_control): `key value` lines."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


def working_set(usage: int, stats: dict[str, int], inactive_key: str) -> int:
    """Memory in use less the page cache the kernel can drop first, as kubelet counts a container's working set."""
    return max(usage - stats.get(inactive_key, 0), 0)


# ---------------------------------------------------------------- I/O: reading the kernel's files


def read_hierarchy(root: Path = ROOT, mounts: str = "/proc/self/mounts",
                   proc_cgroup: str = "/proc/self/cgroup") -> Hierarchy:
    try:
        mounts_text, proc_cgroup_text = Path(mounts).read_text(), Path(proc_cgroup).read_text()
    except OSError:
        return Hierarchy(NONE, root)
    return hierarchy_of(mounts_text, proc_cgroup_text, root)


def oom_kills(hierarchy: Hierarchy, container_id: str) -> int:
    """The kernel's count of OOM kills in the container's memory cgroup (0 if it cannot be read).
    v2 also counts group kills (memory.oom.group): each of those kills the whole cgroup at once."""
    memory = container_cgroup(hierarchy, "memory", container_id)
    try:
        if hierarchy.version == V2:
            events = flat_keyed((memory / "memory.events").read_text())
            return max(events.get("oom_kill", 0), events.get("oom_group_kill", 0))
        return flat_keyed((memory / "memory.oom_control").read_text()).get("oom_kill", 0)
    except OSError:
        return 0


def cgroup_sample(hierarchy: Hierarchy, container_id: str) -> UsageSample | None:
    """CPU time and working set of a container (None if its cgroup cannot be read)."""
    try:
        if hierarchy.version == V2:
            cgroup = container_cgroup(hierarchy, "memory", container_id)
            cpu_seconds = flat_keyed((cgroup / "cpu.stat").read_text())["usage_usec"] / 1e6
            usage = int((cgroup / "memory.current").read_text())
            memory = working_set(usage, flat_keyed((cgroup / "memory.stat").read_text()), "inactive_file")
        else:
            cpuacct = container_cgroup(hierarchy, "cpuacct", container_id)
            cpu_seconds = int((cpuacct / "cpuacct.usage").read_text()) / 1e9
            cgroup = container_cgroup(hierarchy, "memory", container_id)
            usage = int((cgroup / "memory.usage_in_bytes").read_text())
            memory = working_set(usage, flat_keyed((cgroup / "memory.stat").read_text()), "total_inactive_file")
    except (OSError, ValueError, KeyError):
        return None
    return UsageSample(cpu_seconds=cpu_seconds, memory_bytes=memory)


# ---------------------------------------------------------------- can runc use it


def controllers_problem(hierarchy: Hierarchy, enable: bool = True) -> str | None:
    """Why runc could not apply a pod's limits here (None: it can). On v2 the controllers the root lacks
    in cgroup.subtree_control are enabled first when `enable` (runc would do the same at its first container);
    without it nothing is written, and controllers not yet enabled count as usable while that file is
    writable (choosing a driver must not change the machine: only the runc driver's start enables them)."""
    if hierarchy.version == NONE:
        return f"{hierarchy.describe()}: the runc driver needs cgroup v1 or v2 mounted there"
    if hierarchy.version != V2:
        missing = [c for c in V1_CONTROLLERS if c not in hierarchy.mounts]
        if missing:
            return (f"{hierarchy.describe()}: the {', '.join(missing)} controller(s) are not mounted; "
                    f"the runc driver needs {', '.join(V1_CONTROLLERS)} for pod limits and usage")
        return None
    return _v2_problem(hierarchy, enable)


def _v2_problem(hierarchy: Hierarchy, enable: bool) -> str | None:
    top = hierarchy.mounts[UNIFIED]  # the containers' parent is directly below it: only its subtree_control counts
    parent = top / _parent_path(hierarchy).lstrip("/")
    try:
        available = (top / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return f"{hierarchy.describe()}: cannot read {top / 'cgroup.controllers'}: {exc.strerror or exc}"
    unavailable = [c for c in V2_CONTROLLERS if c not in available]
    if unavailable:
        return (f"{hierarchy.describe()}: the {', '.join(unavailable)} controller(s) are not available "
                f"({top / 'cgroup.controllers'} lists {' '.join(available) or 'none'}); "
                f"the runc driver needs {', '.join(V2_CONTROLLERS)} for pod limits")
    failure = _enable_controllers(top) if enable else ""
    not_enabled = [c for c in V2_CONTROLLERS if c not in _subtree_control(top)]
    if not_enabled and not enable and os.access(top / "cgroup.subtree_control", os.W_OK):
        return None  # they can be enabled (EROFS shows here), and will be when the driver starts
    if not_enabled:
        why = f" and cannot be enabled ({failure})" if failure else ""
        return (f"{hierarchy.describe()}: the {', '.join(not_enabled)} controller(s) are not enabled in "
                f"{top / 'cgroup.subtree_control'}{why}, so {parent} cannot have them (is {top} read-only, or "
                f"a container's cgroup namespace root holding processes? cgroup v2's no-internal-processes rule "
                f"keeps a cgroup with processes from enabling controllers for its children)")
    return None


def _subtree_control(cgroup: Path) -> list[str]:
    try:
        return (cgroup / "cgroup.subtree_control").read_text().split()
    except OSError:
        return []


def _enable_controllers(cgroup: Path) -> str:
    """Enable the needed controllers for `cgroup`'s children, one by one; the last error ("" if none)."""
    failure = ""
    for controller in V2_CONTROLLERS:
        if controller in _subtree_control(cgroup):
            continue
        try:
            (cgroup / "cgroup.subtree_control").write_text(f"+{controller}")
        except OSError as exc:
            failure = f"+{controller}: {exc.strerror or exc}"
    return failure
