"""Log files read line by line, /proc identity, state files, host ports."""

import os
import subprocess
import time

from dockyard.services.node_agent.runtime import (
    MAX_LINE_BYTES,
    ContainerRecord,
    FileTail,
    PortAllocator,
    StateDir,
    kill_recorded_processes,
    proc_alive,
    proc_stat,
)


def test_tail_hands_out_whole_lines_and_remembers_where(tmp_path):
    path = tmp_path / "out.log"
    tail = FileTail(path)
    assert tail.read_lines() == []  # no file yet
    path.write_bytes(b"one\ntw")
    assert tail.read_lines() == [b"one"] and tail.consumed == 4
    with open(path, "ab") as f:
        f.write(b"o\nthree")
    assert tail.read_lines() == [b"two"]
    assert tail.read_lines(final=True) == [b"three"] and tail.consumed == path.stat().st_size
    resumed = FileTail(path, offset=4)
    assert resumed.read_lines(final=True) == [b"two", b"three"]


def test_tail_cuts_long_lines_and_starts_over_after_truncation(tmp_path):
    path = tmp_path / "out.log"
    path.write_bytes(b"x" * (MAX_LINE_BYTES * 2 + 5) + b"\n")
    tail = FileTail(path)
    assert [len(piece) for piece in tail.read_lines()] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 5]
    path.write_bytes(b"new\n")
    assert tail.read_lines() == [b"new"]


def test_rotation_empties_a_fully_read_file(tmp_path):
    path = tmp_path / "out.log"
    path.write_bytes(b"a\n" * 10)
    tail = FileTail(path)
    tail.read_lines()
    tail.rotate_if_large(limit=5)
    assert path.stat().st_size == 0 and tail.offset == 0


def test_proc_identity_of_this_process():
    state, ticks = proc_stat(os.getpid())
    assert state in "RS" and ticks > 0
    assert proc_alive(os.getpid(), ticks) and not proc_alive(os.getpid(), ticks + 1)
    assert proc_stat(2**22 + 1) is None and not proc_alive(0, 0)


def test_state_files_round_trip(tmp_path):
    state = StateDir(tmp_path)
    pod_dir = state.pod_dir("default", "web-1", "u1")
    pod_dir.mkdir(parents=True)
    record = ContainerRecord(namespace="default", pod="web-1", uid="u1", container="web", pid=42,
                             host_ports={"http": 31000})
    StateDir.save(pod_dir, record)
    (pod_dir / "broken.json").write_text("{")
    assert state.scan() == {pod_dir: {"web": record}}
    StateDir.remove(pod_dir)
    assert state.scan() == {}


def test_ports_are_never_handed_out_twice():
    ports = PortAllocator()
    fixed = ports.claim(30080)
    given = {ports.allocate() for _ in range(20)}
    assert fixed not in given and len(given) == 20


def test_recorded_processes_are_killed_even_when_their_leader_is_gone(tmp_path):
    # A leader that leaves a child in its group and exits at once.
    leader = subprocess.Popen(["sh", "-c", "sleep 1000 & echo $!"], stdout=subprocess.PIPE, start_new_session=True)
    child = int(leader.stdout.readline())
    leader.wait()
    state = StateDir(tmp_path)
    pod_dir = state.pod_dir("default", "p", "u")
    pod_dir.mkdir(parents=True)
    StateDir.save(pod_dir, ContainerRecord(namespace="default", pod="p", uid="u", container="c", pid=leader.pid))
    _, ticks = proc_stat(child)
    assert kill_recorded_processes(tmp_path) == 0  # the leader was not running
    for _ in range(100):
        if not proc_alive(child, ticks):
            break
        time.sleep(0.02)
    assert not proc_alive(child, ticks)
