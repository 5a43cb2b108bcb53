"""The CLI nits a user trial found, where the logic is pure: describe's states, event fields, top NAME, logs' pod."""

import pytest

from dockyard.cli_top import pod_rows
from dockyard.printers import container_runs, describe, history_rows, pod_for_logs
from dockyard.schemas.events import NodeScore, PodCreated, PodScheduled, PodStatusChanged
from dockyard.schemas.manifests import ContainerStatus, PodStatus
from dockyard.schemas.usage import NodeUsage, PodUsage
from tests.builders import event_record, make_pod

SUBJECT = "dy.evt.pod.default.web-1"
FIRST_START, SECOND_START = "2026-11-26T04:00:00Z", "2026-11-26T04:01:00Z"


def pod_with(status: dict) -> dict:
    return {"kind": "Pod", "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "main", **status}]}}


def state_lines(pod: dict, runs=None) -> list[str]:
    lines = [line.strip() for line in describe(pod, [], runs).splitlines()]
    return lines[lines.index("Image:      busybox") + 1:lines.index("Events:")]


def status_event(seq: int, time: str, **container) -> object:
    status = PodStatus(container_statuses=(ContainerStatus(name="main", **container),))
    return event_record(seq, SUBJECT, PodStatusChanged(status=status), time=time)


def test_a_waiting_container_shows_no_started_time():
    # The agent keeps the last run's start in a waiting status: it is not when anything waiting started.
    lines = state_lines(pod_with({"state": "waiting", "reason": "ContainerCreating", "startedAt": FIRST_START}))

    assert not any(line.startswith("Started:") for line in lines), lines


def test_a_terminated_last_state_shows_when_it_started_and_finished():
    records = [
        status_event(2, FIRST_START, state="running", started_at=FIRST_START),
        status_event(3, "2026-11-26T04:00:30Z", state="terminated", started_at=FIRST_START, exit_code=1,
                     reason="Error"),
        status_event(4, SECOND_START, state="running", started_at=SECOND_START, last_state="terminated"),
    ]
    pod = pod_with({"state": "running", "startedAt": SECOND_START, "lastState": "terminated",
                    "lastReason": "Error", "lastExitCode": 1, "restartCount": 1})

    assert state_lines(pod, container_runs(records)) == [
        "State:          Running", f"Started:      {SECOND_START}",
        "Last State:     Terminated", "Reason:       Error", "Exit Code:    1",
        f"Started:      {FIRST_START}", "Finished:     2026-11-26T04:00:30Z",
        "Ready:          False", "Restart Count:  1",
    ]


def test_a_crash_looping_container_shows_its_last_run_under_last_state_only():
    records = [status_event(3, "2026-11-26T04:00:30Z", state="terminated", started_at=FIRST_START, exit_code=2)]
    pod = pod_with({"state": "waiting", "reason": "CrashLoopBackOff", "startedAt": FIRST_START,
                    "lastState": "terminated", "lastReason": "Error", "lastExitCode": 2, "restartCount": 1})

    assert state_lines(pod, container_runs(records))[:7] == [
        "State:          Waiting", "Reason:       CrashLoopBackOff",
        "Last State:     Terminated", "Reason:       Error", "Exit Code:    2",
        f"Started:      {FIRST_START}", "Finished:     2026-11-26T04:00:30Z",
    ]


def test_a_terminated_state_shows_started_and_finished():
    records = [status_event(3, "2026-11-26T04:00:30Z", state="terminated", started_at=FIRST_START, exit_code=0,
                            reason="Completed")]
    pod = pod_with({"state": "terminated", "reason": "Completed", "exitCode": 0, "startedAt": FIRST_START})

    assert state_lines(pod, container_runs(records))[:5] == [
        "State:          Terminated", "Reason:       Completed", "Exit Code:    0",
        f"Started:      {FIRST_START}", "Finished:     2026-11-26T04:00:30Z",
    ]


def test_event_fields_show_a_list_of_scores_readably_and_leave_out_a_whole_object():
    scheduled = PodScheduled(node_name="vm", total_nodes=1,
                             candidates=(NodeScore(node="vm", score=1.0, plugins={"fit": 1.0}),))
    rows = history_rows([event_record(1, SUBJECT, PodCreated(pod=make_pod())),
                         event_record(2, SUBJECT, scheduled)])

    assert [row[3] for row in rows] == [
        "-", 'node_name=vm, total_nodes=1, candidates=[{"node":"vm","score":1.0,"plugins":{"fit":1.0}}]']


USAGES = {"n1": NodeUsage(node="n1", timestamp="2026-11-26T04:00:00Z", pods=(
    PodUsage(namespace="default", name="web", cpu_millis=100, memory_bytes=1 << 20),
    PodUsage(namespace="default", name="db", cpu_millis=200, memory_bytes=2 << 20),
    PodUsage(namespace="other", name="web", cpu_millis=50, memory_bytes=1 << 20),
))}


def test_top_pod_name_shows_only_that_pod_in_its_namespace():
    assert pod_rows(USAGES, "default", False, name="web") == [["web", "100m", "1Mi"]]
    assert pod_rows(USAGES, "default", False, name="ghost") == []


def pod(name: str, *, node: str = "n1", phase: str = "Running", ready: bool = True, restarts: int = 0,
        created: str = "2026-11-26T04:00:00Z") -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": {"nodeName": node},
            "status": {"phase": phase, "containerStatuses": [{"ready": ready, "restartCount": restarts}]}}


@pytest.mark.parametrize(("pods", "chosen"), [
    ([pod("b", node=""), pod("a")], "a"),
    ([pod("b", phase="Pending"), pod("a")], "a"),
    ([pod("b", ready=False), pod("a")], "a"),
    ([pod("b"), pod("a", restarts=3)], "a"),
    ([pod("b", created="2026-11-26T05:00:00Z"), pod("a")], "a"),
    ([pod("b"), pod("a")], "a"),
], ids=["assigned-first", "running-first", "ready-first", "more-restarts-first", "older-first", "then-by-name"])
def test_logs_of_a_deployment_picks_a_pod_as_kubectl_does(pods, chosen):
    assert pod_for_logs(pods) == chosen


def components(*names: str):
    from dockyard.config import ComponentInfo

    return [ComponentInfo(name=name, pid=pid) for pid, name in enumerate(names, start=100)]


STACK = ("nats", "postgres", "api", "projector", "node-agent")


@pytest.mark.parametrize(("alive", "waited_on"), [
    ({100, 101, 102, 103, 104}, "node-agent"),
    ({100, 101, 102, 103}, "projector"),
    ({100, 101}, "nats"),
    ({101}, "postgres"),
    (set(), None),
], ids=["all", "agent-gone", "services-gone", "nats-gone", "nothing"])
def test_down_says_which_component_the_supervisor_is_stopping(alive, waited_on):
    from dockyard.stack import waiting_on

    component = waiting_on(components(*STACK), lambda pid: pid in alive)

    assert (component.name if component else None) == waited_on


@pytest.mark.parametrize(("pods", "message"), [
    (None, "stopping api..."), (0, "stopping node-agent (0 pods)..."), (1, "stopping node-agent (1 pod)..."),
    (5, "stopping node-agent (5 pods)..."),
], ids=["a-service", "no-pods", "one-pod", "pods"])
def test_down_says_how_many_pods_a_node_agent_stops(pods, message):
    from dockyard.stack import stopping_message

    assert stopping_message("api" if pods is None else "node-agent", pods) == message


def test_down_counts_the_local_pods_from_the_agent_state_directory(tmp_path):
    from dockyard.stack import local_pods

    for pod in ("default_web-1_u1", "default_web-2_u2"):
        (tmp_path / "node-agent" / "pods" / pod).mkdir(parents=True)

    assert local_pods(tmp_path) == 2
    assert local_pods(tmp_path / "elsewhere") == 0
