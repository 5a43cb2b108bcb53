"""The cgroup hierarchy over temp trees shaped like real v1, hybrid and v2 hosts: detection, paths, OOM kills, usage."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.services.node_agent.cgroups import (
    HYBRID,
    NONE,
    V1,
    V2,
    Hierarchy,
    cgroup_sample,
    cgroups_path,
    container_cgroup,
    controllers_problem,
    oom_kills,
    parse_mounts,
    parse_proc_cgroup,
    read_hierarchy,
)
from dockyard.services.node_agent.runc_driver import RuncUnavailable, check_cgroups, runc_problem
from dockyard.services.node_agent.usage import UsageSample

SERVICE = "/system.slice/dockyard-agent.service"

# /proc/self/mounts of a Debian 10 host (systemd's hybrid layout), a v1-only host and a Debian 12 host (v2).
HYBRID_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs {root} tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup2 {root}/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup {root}/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup {root}/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup {root}/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup {root}/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
cgroup {root}/devices cgroup rw,nosuid,nodev,noexec,relatime,devices 0 0
"""
V1_MOUNTS = "\n".join(line for line in HYBRID_MOUNTS.splitlines() if "cgroup2" not in line)
V2_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 {root} cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
"""
HYBRID_PROC_CGROUP = f"""\
12:pids:{SERVICE}
6:memory:{SERVICE}
4:cpu,cpuacct:{SERVICE}
3:devices:{SERVICE}
1:name=systemd:{SERVICE}
0::{SERVICE}
"""
V2_PROC_CGROUP = f"0::{SERVICE}\n"

# Kernel documentation's formats (Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/memory.rst).
V2_MEMORY_EVENTS = "low 0\nhigh 0\nmax 12\noom 3\noom_kill {kills}\noom_group_kill {group}\n"
V2_CPU_STAT = ("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\nnr_throttled 0\n"
               "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n")
V2_MEMORY_STAT = "anon 1048576\nfile 4194304\nkernel 65536\nactive_file 1048576\ninactive_file 3145728\n"
V1_MEMORY_STAT = ("cache 4194304\nrss 1048576\ninactive_file 3145728\nactive_file 1048576\n"
                  "total_cache 4194304\ntotal_rss 1048576\ntotal_inactive_file 3145728\ntotal_active_file 1048576\n")
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n"


def hierarchy(tmp_path: Path, mounts: str, proc_cgroup: str) -> Hierarchy:
    """A hierarchy read, as the agent reads it, from files naming a temp root."""
    root = tmp_path / "cgroup"
    (tmp_path / "mounts").write_text(mounts.format(root=root))
    (tmp_path / "self-cgroup").write_text(proc_cgroup)
    return read_hierarchy(root, str(tmp_path / "mounts"), str(tmp_path / "self-cgroup"))


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.mark.parametrize("mounts, proc_cgroup, version", [
    (HYBRID_MOUNTS, HYBRID_PROC_CGROUP, HYBRID),
    (V1_MOUNTS, HYBRID_PROC_CGROUP, V1),
    (V2_MOUNTS, V2_PROC_CGROUP, V2),
    ("sysfs /sys sysfs rw 0 0\n", "", NONE),
], ids=["hybrid", "v1", "v2", "none"])
def test_the_hierarchy_is_told_from_what_is_mounted_on_the_root(tmp_path, mounts, proc_cgroup, version):
    assert hierarchy(tmp_path, mounts, proc_cgroup).version == version


def test_a_cgroup2_mounted_over_a_v1_tmpfs_makes_it_v2_as_the_last_mount_wins(tmp_path):
    mounts = HYBRID_MOUNTS + "cgroup2 {root} cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
    assert hierarchy(tmp_path, mounts, V2_PROC_CGROUP).version == V2


def test_mount_points_with_spaces_are_unescaped():
    assert parse_mounts("cgroup /sys/fs/my\\040cgroups/memory cgroup rw,memory 0 0\n") == [
        ("/sys/fs/my cgroups/memory", "cgroup", ("rw", "memory"))]


def test_proc_cgroup_lines_map_every_controller_and_the_unified_path():
    own = parse_proc_cgroup(HYBRID_PROC_CGROUP)
    assert own["cpu"] == own["cpuacct"] == own["name=systemd"] == SERVICE
    assert own[""] == SERVICE


def test_the_description_names_what_was_found(tmp_path):
    root = tmp_path / "cgroup"
    assert hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP).describe() == f"cgroup v2 at {root}"
    assert hierarchy(tmp_path, V1_MOUNTS, HYBRID_PROC_CGROUP).describe() == f"cgroup v1 at {root}"
    assert f"cgroup v2 at {root}/unified holds no controllers" in hierarchy(
        tmp_path, HYBRID_MOUNTS, HYBRID_PROC_CGROUP).describe()


# ---------------------------------------------------------------- where the container's cgroup is


def test_on_v1_the_container_is_under_the_agents_own_cgroup_of_each_controller(tmp_path):
    found = hierarchy(tmp_path, HYBRID_MOUNTS, HYBRID_PROC_CGROUP)
    root = tmp_path / "cgroup"
    assert cgroups_path(found, "ns_p_u_c") == "dockyard/ns_p_u_c"  # relative: runc joins it to its own
    assert container_cgroup(found, "memory", "ns_p_u_c") == root / f"memory{SERVICE}/dockyard/ns_p_u_c"
    # cpu and cpuacct mounted together: the mount point from /proc/self/mounts, not the controller's name
    assert container_cgroup(found, "cpuacct", "x") == root / f"cpu,cpuacct{SERVICE}/dockyard/x"


def test_on_v2_the_container_is_under_the_root_where_no_process_can_be_in_the_way(tmp_path):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    assert cgroups_path(found, "ns_p_u_c") == "/dockyard/ns_p_u_c"
    expected = tmp_path / "cgroup/dockyard/ns_p_u_c"
    assert container_cgroup(found, "memory", "ns_p_u_c") == container_cgroup(found, "cpu", "ns_p_u_c") == expected


# ---------------------------------------------------------------- OOM kills and usage


@pytest.mark.parametrize("kills, group, expected", [(0, 0, 0), (2, 0, 2), (0, 1, 1)],
                         ids=["none", "oom_kill", "oom_group_kill"])
def test_v2_oom_kills_are_read_from_memory_events(tmp_path, kills, group, expected):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    write(container_cgroup(found, "memory", "c"), {"memory.events": V2_MEMORY_EVENTS.format(kills=kills,
                                                                                             group=group)})
    assert oom_kills(found, "c") == expected


def test_v1_oom_kills_are_read_from_memory_oom_control(tmp_path):
    found = hierarchy(tmp_path, HYBRID_MOUNTS, HYBRID_PROC_CGROUP)
    write(container_cgroup(found, "memory", "c"), {"memory.oom_control": V1_OOM_CONTROL.format(kills=2)})
    assert oom_kills(found, "c") == 2


@pytest.mark.parametrize("mounts, proc_cgroup", [(HYBRID_MOUNTS, HYBRID_PROC_CGROUP), (V2_MOUNTS, V2_PROC_CGROUP)],
                         ids=["v1", "v2"])
def test_a_cgroup_that_is_gone_has_no_oom_kills_and_no_sample(tmp_path, mounts, proc_cgroup):
    found = hierarchy(tmp_path, mounts, proc_cgroup)
    assert oom_kills(found, "gone") == 0
    assert cgroup_sample(found, "gone") is None


def test_v2_usage_is_cpu_stat_usage_and_memory_current_less_inactive_file(tmp_path):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    write(container_cgroup(found, "memory", "c"), {"cpu.stat": V2_CPU_STAT, "memory.current": "8388608\n",
                                                   "memory.stat": V2_MEMORY_STAT})
    assert cgroup_sample(found, "c") == UsageSample(cpu_seconds=2.5, memory_bytes=8388608 - 3145728)


def test_v1_usage_is_cpuacct_usage_and_memory_usage_less_total_inactive_file(tmp_path):
    found = hierarchy(tmp_path, HYBRID_MOUNTS, HYBRID_PROC_CGROUP)
    write(container_cgroup(found, "cpuacct", "c"), {"cpuacct.usage": "2500000000\n"})
    write(container_cgroup(found, "memory", "c"), {"memory.usage_in_bytes": "8388608\n",
                                                   "memory.stat": V1_MEMORY_STAT})
    assert cgroup_sample(found, "c") == UsageSample(cpu_seconds=2.5, memory_bytes=8388608 - 3145728)


def test_the_working_set_is_never_negative(tmp_path):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    write(container_cgroup(found, "memory", "c"), {"cpu.stat": V2_CPU_STAT, "memory.current": "1024\n",
                                                   "memory.stat": V2_MEMORY_STAT})
    assert cgroup_sample(found, "c").memory_bytes == 0


# ---------------------------------------------------------------- can runc use it


def test_v1_without_a_controller_the_limits_need_is_refused_naming_it(tmp_path):
    mounts = "\n".join(line for line in V1_MOUNTS.splitlines() if ",pids " not in line)
    problem = controllers_problem(hierarchy(tmp_path, mounts, HYBRID_PROC_CGROUP))
    assert problem == (f"cgroup v1 at {tmp_path / 'cgroup'}: the pids controller(s) are not mounted; "
                       f"the runc driver needs memory, cpu, cpuacct, pids for pod limits and usage")
    assert controllers_problem(hierarchy(tmp_path, V1_MOUNTS, HYBRID_PROC_CGROUP)) is None


def test_v2_with_the_controllers_enabled_at_the_root_is_usable(tmp_path):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    write(found.root, {"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
                       "cgroup.subtree_control": "cpuset cpu io memory pids\n"})
    assert controllers_problem(found) is None
    assert check_cgroups(found) is found


def test_v2_without_a_controller_in_the_kernel_is_refused_naming_it(tmp_path):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    write(found.root, {"cgroup.controllers": "cpu io pids\n", "cgroup.subtree_control": "cpu io pids\n"})
    with pytest.raises(RuncUnavailable) as refused:
        check_cgroups(found)
    assert str(refused.value).startswith(f"cgroup v2 at {found.root}: the memory controller(s) are not available")
    assert "--driver process" in str(refused.value)


def test_v2_controllers_that_cannot_be_enabled_are_refused_with_the_reason(tmp_path):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    write(found.root, {"cgroup.controllers": "cpu io memory pids\n"})
    (found.root / "cgroup.subtree_control").mkdir()  # a write fails here as the kernel's would (EBUSY, EROFS)
    problem = controllers_problem(found)
    assert problem.startswith(f"cgroup v2 at {found.root}: the memory, cpu, pids controller(s) are not enabled in "
                              f"{found.root / 'cgroup.subtree_control'} and cannot be enabled (+pids: ")
    assert "no-internal-processes" in problem


def test_choosing_a_driver_only_looks_and_leaves_the_roots_subtree_control_untouched(tmp_path):
    found = hierarchy(tmp_path, V2_MOUNTS, V2_PROC_CGROUP)
    write(found.root, {"cgroup.controllers": "cpuset cpu io memory hugetlb pids\n", "cgroup.subtree_control": ""})
    problem = runc_problem(found)  # what `dockyard up` asks; it may pick the process driver for other reasons
    assert (found.root / "cgroup.subtree_control").read_text() == ""
    assert problem is None or "cgroup" not in problem  # the controllers are available: enabled at the driver's start
    assert controllers_problem(found, enable=False) is None
    assert check_cgroups(found, enable=False) is found
    assert (found.root / "cgroup.subtree_control").read_text() == ""


def test_no_hierarchy_at_all_is_refused(tmp_path):
    problem = controllers_problem(hierarchy(tmp_path, "sysfs /sys sysfs rw 0 0\n", ""))
    expected = f"no cgroup hierarchy at {tmp_path / 'cgroup'}: the runc driver needs cgroup v1 or v2 mounted there"
    assert problem == expected


def test_this_machines_hierarchy_is_read_and_usable_by_runc():
    found = read_hierarchy()
    assert found.version in (V1, V2, HYBRID, NONE)
    if found.version in (V1, HYBRID):  # the memory cgroup runc will use is under this process's own
        own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())["memory"]
        assert str(container_cgroup(found, "memory", "c")).endswith(f"{own.rstrip('/')}/dockyard/c")
