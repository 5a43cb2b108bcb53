"""`dockyard describe`'s text: a pod's container states and a deployment's condition messages, as kubectl shows them."""

from dockyard.printers import describe

POD = {
    "kind": "Pod", "metadata": {"name": "hog", "namespace": "default"},
    "spec": {"nodeName": "n1", "restartPolicy": "Always", "containers": [{"name": "main", "image": "busybox"}]},
    "status": {"phase": "Running", "containerStatuses": [{
        "name": "main", "state": "terminated", "reason": "OOMKilled", "exitCode": 137, "signal": 9,
        "startedAt": "2026-11-26T04:00:00Z", "lastState": "terminated", "lastReason": "Error", "lastExitCode": 1,
        "restartCount": 2}]},
}


def test_a_pod_shows_each_container_state_last_state_and_restarts():
    lines = [line.strip() for line in describe(POD, []).splitlines()]

    at = lines.index("State:          Terminated")
    assert lines[at:at + 10] == [
        "State:          Terminated", "Reason:       OOMKilled", "Exit Code:    137", "Signal:       9",
        "Started:      2026-11-26T04:00:00Z", "Last State:     Terminated", "Reason:       Error", "Exit Code:    1",
        "Ready:          False", "Restart Count:  2",
    ]


def test_condition_messages_show_when_there_are_any():
    deployment = {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}, "status": {
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ImageNotFound",
                        "message": "image r/web:9 is not in the registry index"}]}}

    text = describe(deployment, [])

    assert "Message" in text
    assert "ImageNotFound   image r/web:9 is not in the registry index" in text
    assert "Message" not in describe(POD, [])


def test_a_waiting_container_shows_its_message_under_the_reason():
    pod = {**POD, "status": {"phase": "Pending", "containerStatuses": [{
        "name": "main", "state": "waiting", "reason": "ErrImagePull",
        "message": "image 'r/ghost:9.9' is not in the registry"}]}}
    lines = [line.strip() for line in describe(pod, []).splitlines()]

    at = lines.index("State:          Waiting")
    assert lines[at:at + 4] == ["State:          Waiting", "Reason:       ErrImagePull",
                                "Message:      image 'r/ghost:9.9' is not in the registry", "Ready:          False"]
