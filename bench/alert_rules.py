"""Operators' PromQL alert rules at scale: evaluation time and the range selectors' history memory, in process.

    .venv/bin/python bench/alert_rules.py [--nodes 5000] [--pods 50000] [--rounds 70]

Builds a ClusterHealth of N nodes and M pods (some 6 x M + 9 x N series, 300,000 at the defaults)
and evaluates rule files against it round after round, 5 s of (simulated) time apart, a few pods
restarting each round, as the monitoring service does at each evaluation. Prints, one figure a line:
the machine; then for each rule file: the time of one evaluation round (p50, max), and the history's
series, samples and memory (tracemalloc, after the last round). The files: range selectors over the
nodes' series (5,001), and the worst case, range selectors over every pod's series.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from bench.eventlog import cpu_model, mib, percentile, ram_kib, say  # noqa: E402
from dockyard.services.monitoring.health import ClusterHealth, NodeHealth, PodHealth  # noqa: E402
from dockyard.services.monitoring.rules import evaluate  # noqa: E402
from dockyard.services.monitoring.userrules import parse_rules  # noqa: E402

FEW = """\
groups:
  - name: few
    rules:
      - alert: NodeCordoning
        expr: changes(dockyard_node_spec_unschedulable[5m]) > 2
      - alert: NodesBusy
        expr: >
          sum by (resource) (dockyard_node_status_allocated)
            / sum by (resource) (dockyard_node_status_allocatable) > 0.9
      - alert: SchedulerErrors
        expr: rate(dockyard_scheduler_schedule_attempts_total{result="error"}[5m]) > 0
"""
EVERY_POD = """\
groups:
  - name: every-pod
    rules:
      - alert: PodRestarting
        expr: increase(dockyard_pod_container_status_restarts_total[5m]) > 3
      - alert: PodFlapping
        expr: changes(dockyard_pod_status_phase{phase="Running"}[5m]) > 4
"""
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def cluster(nodes: int, pods: int, round_: int) -> ClusterHealth:
    node_list = tuple(NodeHealth(name=f"n{i}", ready="True", cpu_allocatable=4000, memory_allocatable=8 << 30,
                                 cpu_allocated=1000, unschedulable=(i + round_) % 97 == 0) for i in range(nodes))
    pod_list = tuple(PodHealth(namespace=f"ns{i % 50}", name=f"p{i}", phase="Running", node=f"n{i % nodes}",
                               container_restarts=(("main", (round_ if i % 1000 == 0 else 0)),))
                     for i in range(pods))
    return ClusterHealth(nodes=node_list, pods=pod_list)


def rounds(text: str, healths: list[ClusterHealth]) -> tuple[list[float], dict, object]:
    """Evaluate the file's rules once per health, 5 s apart: each round's seconds, the alerts, the history."""
    rules = parse_rules(text)
    times, alerts = [], {}
    for round_, health in enumerate(healths):
        start = time.perf_counter()
        alerts = evaluate(rules, health, T0 + dt.timedelta(seconds=5 * round_), alerts)
        times.append(time.perf_counter() - start)
    return times, alerts, rules[0].condition.history


def bench(name: str, text: str, healths: list[ClusterHealth]) -> None:
    times, alerts, history = rounds(text, healths)
    times.sort()
    say(f"{name}: evaluation round p50 {percentile(times, 0.5) * 1000:,.0f} ms, max {times[-1] * 1000:,.0f} ms"
        f" over {len(times)} rounds")
    say(f"{name}: history {history.series():,} series, {history.samples():,} samples; {len(alerts):,} alerts")
    del alerts, history
    tracemalloc.start()  # a second pass: tracemalloc slows the first's timing several times
    _, alerts, history = rounds(text, healths)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    say(f"{name}: memory held after the rounds (the history, alerts, last samples) {mib(held / 1024)}"
        f" = {held / max(1, history.samples()):,.0f} bytes a sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=70)
    args = parser.parse_args()
    say(f"machine: {cpu_model()}, {os.cpu_count()} cores, {mib(ram_kib())} RAM, Python {platform.python_version()}")
    states = [cluster(args.nodes, args.pods, r % 7) for r in range(7)]  # 7 distinct states, reused
    healths = [states[r % 7] for r in range(args.rounds)]
    say(f"cluster: {args.nodes:,} nodes, {args.pods:,} pods, about {6 * args.pods + 9 * args.nodes:,} series")
    bench("nodes' series", FEW, healths)
    bench("every pod", EVERY_POD, healths)


if __name__ == "__main__":
    main()
