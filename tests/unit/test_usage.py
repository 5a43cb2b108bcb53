"""Usage arithmetic: two samples a window apart make a CPU rate; nodes sum their pods or measure the machine."""

from __future__ import annotations

import os

import pytest

from dockyard.schemas.usage import ContainerUsage, NodeUsage, PodUsage, usage_decoder, usage_encoder
from dockyard.services.node_agent.usage import (
    PodSample,
    ProcessGroupTable,
    UsageReporter,
    UsageSample,
    container_requests,
    cpu_rate_millis,
    hollow_samples,
    machine_sample,
    pod_requests,
    process_group_samples,
    split_by_requests,
    synthetic_sample,
    usage_share,
    worker_samples,
)
from tests.builders import make_pod


@pytest.mark.parametrize(("before", "after", "window", "expected"), [
    (None, UsageSample(5.0, 1), 5.0, 0),
    (UsageSample(1.0, 1), UsageSample(2.0, 1), 4.0, 250),
    (UsageSample(1.0, 1), UsageSample(9.0, 1), 4.0, 2000),
    (UsageSample(9.0, 1), UsageSample(1.0, 1), 4.0, 0),
    (UsageSample(1.0, 1), UsageSample(2.0, 1), 0.0, 0),
], ids=["first-sample", "quarter-core", "two-cores", "restarted-counter", "no-window"])
def test_cpu_rate(before, after, window, expected):
    assert cpu_rate_millis(before, after, window) == expected


def test_a_synthetic_sample_is_a_stable_share_of_the_requests():
    share = usage_share("uid-1")
    assert share == usage_share("uid-1") != usage_share("uid-2") and 0.25 <= share <= 0.9
    one = synthetic_sample(share, 400, 64 << 20, 10.0)
    rate = cpu_rate_millis(synthetic_sample(share, 400, 64 << 20, 5.0), one, 5.0)
    assert rate == round(share * 400) and one.memory_bytes == int(share * (64 << 20))
    assert synthetic_sample(share, 0, 0, 10.0).memory_bytes == int(share * (200 << 20))


def test_pod_requests_sum_the_containers():
    pod = make_pod(containers=[
        {"name": "a", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
        {"name": "b", "image": "x", "resources": {"requests": {"cpu": "1"}}},
        {"name": "c", "image": "x"},
    ])
    assert pod_requests(pod) == (1250, 64 << 20)


def reporter(samples: list, machine=None) -> UsageReporter:
    return UsageReporter(log_=None, nodes=["n1", "n2"],
                         pod_samples=lambda monotonic: [PodSample(*pod) for pod in samples.pop(0)],
                         node_sample=(lambda: machine.pop(0)) if machine is not None else None)


def test_a_hollow_node_is_the_sum_of_its_pods():
    rounds = [
        [("n1", "default", "a", "u1", UsageSample(1.0, 10)), ("n1", "default", "b", "u2", UsageSample(0.0, 5)),
         ("n2", "default", "c", "u3", None)],
        [("n1", "default", "a", "u1", UsageSample(3.0, 20)), ("n1", "default", "b", "u2", UsageSample(0.5, 5)),
         ("elsewhere", "default", "d", "u4", UsageSample(9.0, 9))],
    ]
    usage = reporter(rounds)
    first = usage.sample(100.0, "t1")
    assert [(u.node, u.cpu_millis, u.memory_bytes, len(u.pods)) for u in first] == [("n1", 0, 15, 2), ("n2", 0, 0, 0)]
    n1, n2 = usage.sample(102.0, "t2")
    assert n1 == NodeUsage(node="n1", timestamp="t2", window_seconds=2.0, cpu_millis=1250, memory_bytes=25,
                           pods=(PodUsage(namespace="default", name="a", cpu_millis=1000, memory_bytes=20),
                                 PodUsage(namespace="default", name="b", cpu_millis=250, memory_bytes=5)))
    assert n2 == NodeUsage(node="n2", timestamp="t2", window_seconds=2.0)


def test_a_measured_machine_is_the_node():
    usage = reporter([[], [("n1", "default", "a", "u1", UsageSample(1.0, 10))]],
                     machine=[UsageSample(100.0, 1000), UsageSample(103.0, 2000)])
    usage.sample(0.0, "t1")
    n1, _ = usage.sample(2.0, "t2")
    assert (n1.cpu_millis, n1.memory_bytes, n1.pods[0].cpu_millis) == (1500, 2000, 0)


def test_this_process_group_is_measured_from_proc():
    groups = process_group_samples()
    sample = groups.get(os.getpgrp())
    assert sample is not None and sample.cpu_seconds > 0 and sample.memory_bytes > 1 << 20
    assert 2 ** 22 + 7 not in groups


def fake_process(proc, pid: int, pgid: int, utime: int, rss_pages: int) -> None:
    # proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # ... rss is field 24. The command name may hold spaces and ')'.
    fields = ["S", "1", str(pgid), *["0"] * 8, str(utime), "5", *["0"] * 8, str(rss_pages)]
    (proc / str(pid)).mkdir(exist_ok=True)
    (proc / str(pid) / "stat").write_text(f"{pid} (a) b) {' '.join(fields)}\n")


def test_process_groups_are_summed_from_one_scan_per_round(tmp_path):
    fake_process(tmp_path, 10, 10, utime=100, rss_pages=3)
    fake_process(tmp_path, 11, 10, utime=50, rss_pages=2)
    fake_process(tmp_path, 20, 20, utime=1, rss_pages=1)
    (tmp_path / "self").mkdir()
    table = ProcessGroupTable(str(tmp_path), max_age_seconds=1.0)
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    assert table.sample(10, monotonic=50.0) == UsageSample(cpu_seconds=160 / ticks, memory_bytes=5 * page)
    fake_process(tmp_path, 21, 20, utime=4, rss_pages=1)
    assert table.sample(20, monotonic=50.5) == UsageSample(cpu_seconds=6 / ticks, memory_bytes=page)  # same scan
    assert table.sample(20, monotonic=51.5) == UsageSample(cpu_seconds=15 / ticks, memory_bytes=2 * page)
    assert table.sample(30, monotonic=51.6) is None


def test_the_machine_from_proc_stat_and_meminfo(tmp_path):
    (tmp_path / "stat").write_text("cpu  100 10 50 1000 20 5 5 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    (tmp_path / "meminfo").write_text("MemTotal:       8000 kB\nMemFree:        1000 kB\nMemAvailable:   3000 kB\n")
    sample = machine_sample(str(tmp_path))
    ticks = os.sysconf("SC_CLK_TCK")
    assert sample == UsageSample(cpu_seconds=180 / ticks, memory_bytes=5000 * 1024)


@pytest.mark.parametrize(("requests", "expected"), [
    ({"a": (300, 96), "b": (100, 32)}, {"a": (3.0, 75), "b": (1.0, 25)}),
    ({"a": (0, 0), "b": (0, 0)}, {"a": (2.0, 50), "b": (2.0, 50)}),
    ({"a": (400, 0), "b": (0, 0), "c": (0, 0)}, {"a": (4.0, 33), "b": (0.0, 33), "c": (0.0, 34)}),
    ({"only": (0, 0)}, {"only": (4.0, 100)}),
], ids=["by-requests", "none-request-evenly", "memory-rounding-to-the-last", "one-container"])
def test_a_pod_sample_is_split_over_its_containers_by_their_requests(requests, expected):
    parts = split_by_requests(UsageSample(4.0, 100), requests)
    assert {name: (round(p.cpu_seconds, 9), p.memory_bytes) for name, p in parts.items()} == expected
    assert sum(p.memory_bytes for p in parts.values()) == 100


def test_a_hollow_pods_containers_add_up_to_the_pods_synthetic_sample():
    pod = make_pod(containers=[
        {"name": "app", "image": "x", "resources": {"requests": {"cpu": "300m", "memory": "96Mi"}}},
        {"name": "sidecar", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}},
    ])
    requests = container_requests(pod)
    assert requests == {"app": (300, 96 << 20), "sidecar": (100, 32 << 20)}
    share = usage_share(pod.metadata.uid)
    parts = hollow_samples(share, requests, 10.0)
    whole = synthetic_sample(share, *pod_requests(pod), 10.0)
    assert list(parts) == ["app", "sidecar"]
    assert sum(p.memory_bytes for p in parts.values()) == whole.memory_bytes
    assert parts["app"].cpu_seconds == pytest.approx(3 * parts["sidecar"].cpu_seconds)
    assert hollow_samples(share, {}, 10.0) == {}


def test_containers_get_rates_over_the_same_window_as_their_pod():
    rounds = [
        [("n1", "default", "a", "u1", UsageSample(1.5, 30), (("web", UsageSample(1.0, 20)),
                                                             ("log", UsageSample(0.5, 10))))],
        [("n1", "default", "a", "u1", UsageSample(4.0, 35), (("web", UsageSample(3.0, 25)),
                                                             ("log", UsageSample(1.0, 10))))],
    ]
    usage = reporter(rounds)
    first, _ = usage.sample(10.0, "t1")
    assert [(c.name, c.cpu_millis) for c in first.pods[0].containers] == [("web", 0), ("log", 0)]
    n1, _ = usage.sample(12.0, "t2")
    assert n1.pods == (PodUsage(namespace="default", name="a", cpu_millis=1250, memory_bytes=35, containers=(
        ContainerUsage(name="web", cpu_millis=1000, memory_bytes=25),
        ContainerUsage(name="log", cpu_millis=250, memory_bytes=10))),)


def test_a_restarted_container_starts_its_rate_again():
    rounds = [
        [("n1", "default", "a", "u1", UsageSample(9.0, 1), (("web", UsageSample(9.0, 1)),))],
        [("n1", "default", "a", "u1", UsageSample(0.2, 1), (("web", UsageSample(0.2, 1)),))],
    ]
    usage = reporter(rounds)
    usage.sample(0.0, "t1")
    n1, _ = usage.sample(2.0, "t2")
    assert (n1.pods[0].cpu_millis, n1.pods[0].containers[0].cpu_millis) == (0, 0)


def test_one_containers_restart_leaves_the_others_cpu_in_the_pods():
    rounds = [
        [("n1", "default", "a", "u1", UsageSample(10.0, 2), (("web", UsageSample(1.0, 1)), ("log", UsageSample(9.0, 1))))],
        [("n1", "default", "a", "u1", UsageSample(3.1, 2), (("web", UsageSample(3.0, 1)), ("log", UsageSample(0.1, 1))))],
    ]
    usage = reporter(rounds)
    usage.sample(0.0, "t1")
    n1, _ = usage.sample(2.0, "t2")
    assert n1.pods[0].cpu_millis == 1000 and [c.cpu_millis for c in n1.pods[0].containers] == [1000, 0]


class ContainerWorker:
    def __init__(self, uid: str, samples: dict[str, UsageSample]):
        self.uid, self.samples, self.clocks = uid, samples, []

    def container_samples(self, monotonic: float) -> dict[str, UsageSample]:
        self.clocks.append(monotonic)
        return self.samples


class PodWorker:
    uid = "u2"

    def usage_sample(self, monotonic: float) -> UsageSample | None:
        return UsageSample(1.0, 7)


def test_a_workers_pod_sample_is_the_sum_of_its_containers_read_once_at_the_rounds_clock():
    per_container = ContainerWorker("u1", {"web": UsageSample(1.0, 20), "log": UsageSample(0.5, 10)})
    idle = ContainerWorker("u3", {})
    pods = {("default", "a"): make_pod(name="a", nodeName="n1"), ("default", "b"): make_pod(name="b", nodeName="n1"),
            ("default", "c"): make_pod(name="c", nodeName="n1")}
    workers = {("default", "a"): per_container, ("default", "b"): PodWorker(), ("default", "c"): idle}
    samples = {s.name: s for s in worker_samples(workers, pods, 42.0)}
    assert samples["a"] == PodSample("n1", "default", "a", "u1", UsageSample(1.5, 30),
                                     (("web", UsageSample(1.0, 20)), ("log", UsageSample(0.5, 10))))
    assert samples["b"] == PodSample("n1", "default", "b", "u2", UsageSample(1.0, 7), ())
    assert samples["c"].sample is None and per_container.clocks == [42.0]


def test_old_and_new_pod_usage_read_each_other():
    old = b'{"node":"n1","timestamp":"t","pods":[{"namespace":"default","name":"a","cpu_millis":5}]}'
    assert usage_decoder.decode(old).pods[0].containers == ()
    without = NodeUsage(node="n1", timestamp="t", pods=(PodUsage(namespace="default", name="a", cpu_millis=5),))
    assert b"containers" not in usage_encoder.encode(without)
