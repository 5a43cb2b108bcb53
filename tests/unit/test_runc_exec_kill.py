"""A timed-out exec probe's kill: only processes in the container's cgroup, pinned by a pidfd from check to kill."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from dockyard.services.node_agent import runc_driver


@pytest.fixture
def sleeper():
    """A real process in this test's own cgroup, not any container's."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(params=["pidfd", "no-pidfd"])
def pidfds(request, monkeypatch):
    """With pidfds, and as on a kernel without them (pidfd_open fails with ENOSYS): check, then kill."""
    if request.param == "no-pidfd":
        def unsupported(pid, flags=0):
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
        monkeypatch.setattr(runc_driver.os, "pidfd_open", unsupported)
    return request.param


def test_a_process_outside_the_container_is_never_signalled(sleeper, pidfds):
    assert not runc_driver._kill_in_container(sleeper.pid, "default_web_uid_main")
    assert runc_driver._kill_exec_process(sleeper.pid, "default_web_uid_main", runc_pid=0) == []
    assert sleeper.poll() is None


def test_a_process_in_the_container_is_killed(sleeper, pidfds, monkeypatch):
    monkeypatch.setattr(runc_driver, "_in_container", lambda pid, container_id: pid == sleeper.pid)
    assert runc_driver._kill_exec_process(sleeper.pid, "default_web_uid_main", runc_pid=0) == [sleeper.pid]
    assert sleeper.wait(timeout=30) == -9


def test_runc_exec_itself_is_spared(sleeper, pidfds, monkeypatch):
    monkeypatch.setattr(runc_driver, "_in_container", lambda pid, container_id: True)
    assert runc_driver._kill_exec_process(sleeper.pid, "c", runc_pid=sleeper.pid) == []
    assert sleeper.poll() is None


def test_a_process_that_is_gone_is_not_reported_killed(pidfds):
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid names no process, or (reused) one outside any container
    assert not runc_driver._kill_in_container(ended.pid, "default_web_uid_main")
