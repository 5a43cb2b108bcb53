"""History and time travel against real NATS and PostgreSQL: the CLI, and snapshots taken by the projector."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

from sqlalchemy import create_engine, text

from dockyard.db import async_engine
from dockyard.eventlog import Append, subject_for
from dockyard.schemas.events import PodCreated, PodDeleted, PodScheduled, PodStatusChanged
from dockyard.schemas.manifests import PodStatus
from dockyard.timetravel import event_time, load_snapshot, objects_at, position_at
from tests.builders import deployment_manifest, make_pod, pod_manifest
from tests.integration.test_cli import dockyard, ok, refused, write
from tests.integration.test_projector import wait_for_position


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def history(env, *args: str) -> list[dict]:
    return json.loads(ok(dockyard(env, "history", *args, "-o", "json")))


def pause() -> None:
    time.sleep(0.05)  # moments on either side of a time are apart on the envelope's clock too


def test_get_at_shows_the_replicas_before_a_scale(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "a.yaml", deployment_manifest("web", replicas=2))))
    pause()
    then = now()
    pause()
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "b.yaml", deployment_manifest("web", replicas=5))))

    past = json.loads(ok(dockyard(stack_env, "get", "deployment", "web", "--at", then, "-o", "json")))
    assert past["spec"]["replicas"] == 2 and past["metadata"]["generation"] == 1
    present = json.loads(ok(dockyard(stack_env, "get", "deployment", "web", "-o", "json")))
    assert present["spec"]["replicas"] == 5

    created_seq = history(stack_env, "deployment", "web")[0]["seq"]
    at_seq = json.loads(ok(dockyard(stack_env, "get", "deploy", "web", "--at-seq", str(created_seq), "-o", "json")))
    assert at_seq == past

    table = ok(dockyard(stack_env, "get", "deployments", "--at", then)).splitlines()
    assert table[0].split()[:2] == ["NAME", "READY"] and table[1].split()[:2] == ["web", "0/2"]
    assert ok(dockyard(stack_env, "get", "deployments", "--at", then, "-o", "name")).strip() == "deployment/web"
    assert "Replicas:           2 desired" in ok(dockyard(stack_env, "describe", "deployment", "web", "--at", then))

    before_anything = dockyard(stack_env, "get", "deployments", "--at-seq", "0")
    assert before_anything.returncode == 0 and before_anything.stdout == b""
    assert "No resources found in default namespace" in before_anything.stderr.decode()
    assert 'deployments "web" not found at seq 0' in refused(
        dockyard(stack_env, "get", "deployment", "web", "--at-seq", "0"))
    assert "--at" in refused(dockyard(stack_env, "get", "deployments", "--at", "yesterday-ish"))


def test_get_at_lists_with_selectors_namespaces_and_wide(stack_env, tmp_path):
    docs = [pod_manifest("a"), pod_manifest("b", "team"),
            {**pod_manifest("c", "team"), "metadata": {"name": "c", "namespace": "team", "labels": {"app": "db"}}}]
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "pods.yaml", *docs)))
    pause()
    then = now()
    pause()
    ok(dockyard(stack_env, "delete", "pod", "b", "-n", "team"))

    def names(*args: str) -> list[str]:
        return ok(dockyard(stack_env, "get", "pods", "-o", "name", "--at", then, *args)).split()

    assert names() == ["pod/a"]
    assert names("-n", "team") == ["pod/b", "pod/c"]
    assert names("-A", "-l", "app=web") == ["pod/a", "pod/b"]
    assert ok(dockyard(stack_env, "get", "pods", "-o", "name", "-n", "team")).split() == ["pod/c"]
    wide = ok(dockyard(stack_env, "get", "pods", "-A", "-o", "wide", "--at", then)).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    listed = json.loads(ok(dockyard(stack_env, "get", "pods", "-n", "team", "-o", "json", "--at", then)))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["b", "c"]
    assert "--watch" in refused(dockyard(stack_env, "get", "pods", "-w", "--at", then))


def test_history_lists_events_with_actor_and_what_changed(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "a.yaml", deployment_manifest("web", replicas=2))))
    ok(dockyard(stack_env, "scale", "deployment", "web", "--replicas", "4"))
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "b.yaml", deployment_manifest("web", replicas=4,
                                                                                         image="nginx:1.28"))))
    ok(dockyard(stack_env, "delete", "deployment", "web"))

    entries = history(stack_env, "deployment", "web")
    actor = entries[0]["actor"]
    assert actor and all(e["actor"] == actor for e in entries)
    assert [(e["type"], e["detail"]) for e in entries] == [
        ("deployment.created.v1", "created"),
        ("deployment.updated.v1", "spec.replicas 2→4, metadata.generation 1→2"),
        ("deployment.updated.v1", "spec.template.spec.containers[web].image nginx:1.27→nginx:1.28, "
                                  "metadata.generation 2→3"),
        ("deployment.deleted.v1", "deleted"),
    ]
    assert entries == sorted(entries, key=lambda e: e["seq"])

    table = ok(dockyard(stack_env, "history", "deploy", "web")).splitlines()
    assert table[0].split() == ["SEQ", "TIME", "TYPE", "ACTOR", "DETAIL"]
    assert table[2].split()[2:5] == ["deployment.updated.v1", actor, "spec.replicas"]
    assert 'pods "nope" has no history' in refused(dockyard(stack_env, "history", "pod", "nope"))


def test_diff_shows_what_changed_between_two_moments(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "a.yaml", deployment_manifest("web", replicas=3),
                                                pod_manifest("old"))))
    pause()
    start = now()
    pause()
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "b.yaml", deployment_manifest("web", replicas=5),
                                                pod_manifest("new"))))
    ok(dockyard(stack_env, "delete", "pod", "old"))
    pause()
    end = now()
    pause()
    ok(dockyard(stack_env, "delete", "deployment", "web"))  # after --to: not in the diff

    result = dockyard(stack_env, "diff", "--from", start, "--to", end)
    lines = ok(result).splitlines()
    assert lines[0].split() == ["CHANGE", "OBJECT", "FIELDS"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["changed", "deployment/default/web"], ["added", "pod/default/new"], ["removed", "pod/default/old"]]
    assert "spec.replicas 3→5" in lines[1]
    assert result.stderr.decode().strip().startswith("1 added, 1 removed, 1 changed between seq")

    only_pods = json.loads(ok(dockyard(stack_env, "diff", "pods", "--from", start, "--to", end, "-o", "json")))
    assert [(c["change"], c["name"]) for c in only_pods["changes"]] == [("added", "new"), ("removed", "old")]
    everything = json.loads(ok(dockyard(stack_env, "diff", "deployments", "--from", start, "-o", "json")))
    assert [(c["change"], c["name"]) for c in everything["changes"]] == [("removed", "web")]
    assert "before" in refused(dockyard(stack_env, "diff", "--from", end, "--to", start))


def test_snapshots_take_and_list(stack_env, tmp_path):
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "a.yaml", deployment_manifest("web"), pod_manifest("p"))))
    taken = ok(dockyard(stack_env, "snapshots", "take")).splitlines()
    assert taken[0].startswith("deployments: snapshot at seq")
    assert taken[2] == "nodes: nothing projected yet, no snapshot"
    listed = ok(dockyard(stack_env, "snapshots", "list")).splitlines()
    assert listed[0].split() == ["KIND", "POSITION", "TAKEN", "OBJECTS"]
    assert [(line.split()[0], line.split()[-1]) for line in listed[1:]] == [("Deployment", "1"), ("Pod", "1")]
    ok(dockyard(stack_env, "apply", "-f", write(tmp_path, "b.yaml", pod_manifest("q"))))
    assert ok(dockyard(stack_env, "get", "pods", "-o", "name", "--at", now())).split() == ["pod/p", "pod/q"]


# ---------------------------------------------------------------- snapshots from the projector


def churn(pods: int) -> list[Append]:
    """Pods created, scheduled, running, and every third deleted; interleaved across pods."""
    appends: list[Append] = []
    subjects = [subject_for("pod", "default" if i % 2 else "team", f"p{i}") for i in range(pods)]
    for i, subject in enumerate(subjects):
        appends.append(Append(subject=subject, event=PodCreated(pod=make_pod(f"p{i}", subject.split(".")[3]))))
    for i, subject in enumerate(subjects):
        appends.append(Append(subject=subject, event=PodScheduled(node_name=f"n{i % 3}")))
        appends.append(Append(subject=subject, event=PodStatusChanged(status=PodStatus(phase="Running"))))
    appends.extend(Append(subject=s, event=PodDeleted(reason="ScaledDown")) for s in subjects[::3])
    return appends


async def test_the_projectors_snapshots_give_the_same_past_as_the_log_alone(eventlog, services, database_url):
    services("projector", "--snapshot-every", "7")
    appends = churn(20)
    for start in range(0, len(appends), 9):  # several batches, so several snapshots
        assert all(isinstance(r, int) for r in await eventlog.append_many(appends[start:start + 9]))
    last = await eventlog.last_stream_seq()
    wait_for_position(database_url, "pods", last)

    engine = create_engine(database_url)
    with engine.connect() as conn:
        positions = [p for (p,) in conn.execute(text("SELECT DISTINCT position FROM snapshots WHERE kind = 'Pod'"
                                                     " ORDER BY position"))]
    engine.dispose()
    assert positions and positions[-1] <= last

    engine_ = async_engine(database_url, pool_size=1)
    try:
        snapshot_position, snapshot = await load_snapshot(engine_, "Pod", last)
        assert snapshot_position == positions[-1] and snapshot == await objects_at(eventlog, "Pod", snapshot_position)
        for seq in range(0, last + 1):
            for namespace in ("", "team"):
                assert await objects_at(eventlog, "Pod", seq, namespace, engine_) == \
                    await objects_at(eventlog, "Pod", seq, namespace), (seq, namespace)
    finally:
        await engine_.dispose()


async def test_a_time_finds_the_last_event_at_or_before_it(eventlog):
    for i in range(5):
        await eventlog.append(subject_for("pod", "default", f"p{i}"), PodCreated(pod=make_pod(f"p{i}")))
        await asyncio.sleep(0.01)
    times = [await event_time(eventlog, seq) for seq in range(1, 6)]
    assert times == sorted(times)
    assert await position_at(eventlog, times[2]) == 3
    assert await position_at(eventlog, times[0] - dt.timedelta(seconds=1)) == 0
    assert await position_at(eventlog, times[4] + dt.timedelta(days=1)) == 5

