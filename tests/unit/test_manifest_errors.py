"""Manifest errors: type and value errors reported together, in the document's order, with the bad value quoted."""

import pytest
import yaml

from dockyard.manifests import MAX_SHOWN_VALUE, ManifestError, load_manifests, validate
from tests.builders import deployment_manifest, pod_manifest

CONTAINER = "spec.template.spec.containers[0]"


def error_lines(document: dict) -> list[str]:
    with pytest.raises(ManifestError) as raised:
        validate(document)
    return list(raised.value.errors)


def test_value_errors_are_reported_with_type_errors():
    document = deployment_manifest(replicas="three")
    document["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"
    document["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"

    assert error_lines(document) == [
        'spec.replicas: expected int, got str "three"',
        f'{CONTAINER}.imagePullPolicy: "Sometimes" is not one of Always, IfNotPresent, Never',
        'spec.template.spec.restartPolicy: "Sometimes" is not one of Always, OnFailure, Never',
        'spec.template.spec.restartPolicy: "Sometimes" is not supported in a Deployment (only Always)',
    ]


def test_errors_follow_the_order_of_fields_in_the_document():
    # spec before metadata, and within the container, ports before name: the YAML's order, not the schema's.
    document = pod_manifest(name="Web")
    container = {"ports": [{"containerPort": "eighty"}], "name": "main", "imagePullPolicy": "Sometimes"}
    document = {"spec": {"containers": [container]}, "metadata": document["metadata"],
                "kind": "Pod", "apiVersion": "v1"}
    lines = load_error_lines(yaml.safe_dump(document, sort_keys=False).encode())

    assert [line.split(":")[0] for line in lines] == [
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[0].imagePullPolicy",
        "metadata.name",
    ]


def load_error_lines(data: bytes) -> list[str]:
    with pytest.raises(ManifestError) as raised:
        load_manifests(data, "")
    return [line.removeprefix("document 1: ") for line in raised.value.errors]


def test_a_missing_field_comes_after_the_fields_given_beside_it():
    document = pod_manifest(restartPolicy="Sometimes")
    document["spec"]["containers"] = [{"image": "busybox", "workingDir": 7}]

    assert error_lines(document) == [
        "spec.containers[0].workingDir: expected str, got int 7",
        "spec.containers[0].name: required field is missing",
        'spec.restartPolicy: "Sometimes" is not one of Always, OnFailure, Never',
    ]


@pytest.mark.parametrize(("path", "value", "message"), [
    (("spec", "containers"), "web", 'spec.containers: expected array, got str "web"'),
    (("metadata", "name"), 5, "metadata.name: expected str, got int 5"),
    (("spec", "selector"), None, "spec.selector: expected object, got null"),
], ids=["containers-not-a-list", "name-not-a-string", "selector-null"])
def test_a_part_of_the_wrong_type_is_not_reported_again_by_the_value_rules(path, value, message):
    # Its stand-in (no containers, an empty name, no selector labels) would break value rules too.
    document = deployment_manifest() if path[1] == "selector" else pod_manifest()
    document[path[0]][path[1]] = value

    assert error_lines(document) == [message]


def test_a_dotted_label_key_is_placed_by_the_document_not_by_its_dots():
    document = pod_manifest(restartPolicy="Sometimes")
    document["metadata"]["labels"] = {"app.kubernetes.io/name": 3, "tier": "a b"}

    assert [line.split(": ")[0] for line in error_lines(document)] == [
        "metadata.labels.app.kubernetes.io/name",
        "metadata.labels.tier",
        "spec.restartPolicy",
    ]


@pytest.mark.parametrize(("value", "shown"), [
    (True, "got bool true"),
    (2.5, "got float 2.5"),
    ('say "hi"\nbye', r'got str "say \"hi\"\nbye"'),
], ids=["bool", "float", "string-quoted-on-one-line"])
def test_the_bad_value_is_quoted_as_kubectl_quotes_it(value, shown):
    assert error_lines(deployment_manifest(replicas=value)) == [f"spec.replicas: expected int, {shown}"]


def test_a_long_bad_value_is_cut_short():
    [line] = error_lines(deployment_manifest(replicas="x" * 10_000))

    assert line == f'spec.replicas: expected int, got str "{"x" * MAX_SHOWN_VALUE}..."'


def test_an_object_is_not_quoted_whole():
    assert error_lines(deployment_manifest(replicas={"a": 1})) == ["spec.replicas: expected int, got object"]
