"""Manifests: loading YAML/JSON documents, strict validation into structs, and canonical encoding."""

import copy
import json
import re

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.manifests import (
    MAX_DOCUMENT_BYTES,
    ManifestError,
    load_documents,
    load_manifests,
    to_kubernetes_dict,
    validate,
)
from dockyard.schemas.manifests import (
    KIND_ALIASES,
    KINDS,
    Deployment,
    DeploymentStatus,
    Node,
    NodeStatus,
    Pod,
    PodStatus,
    Resource,
)
from tests.strategies import deployments, nodes, pods

# ---------------------------------------------------------------- builders


def make_container(name: str = "web", **fields) -> dict:
    return {"name": name, "image": "nginx:1.27", **fields}


def make_pod(name: str = "web", *, api_version: str = "v1", containers: list | None = None, **spec) -> dict:
    return {
        "apiVersion": api_version,
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": containers if containers is not None else [make_container()], **spec},
    }


def make_deployment(
    name: str = "web",
    *,
    api_version: str = "dockyard.io/v1",
    replicas: int = 3,
    labels: dict | None = None,
    containers: list | None = None,
    **spec,
) -> dict:
    labels = labels if labels is not None else {"app": name}
    return {
        "apiVersion": api_version,
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": containers if containers is not None else [make_container(name)]},
            },
            **spec,
        },
    }


def make_node(name: str = "node-1.rack-a", *, api_version: str = "v1", **spec) -> dict:
    return {
        "apiVersion": api_version,
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"capacity": {"cpu": 4, "memory": "16Gi", "pods": 110}, **spec},
    }


_REMOVE = object()
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def changed(document: dict, path: str, value) -> dict:
    """A copy of document with the value at a path like "spec.containers[0].name" set (or removed)."""
    document = copy.deepcopy(document)
    keys = [key if index == "" else int(index) for key, index in _PATH_PART.findall(path)]
    parent = document
    for key in keys[:-1]:
        parent = parent[key]
    if value is _REMOVE:
        del parent[keys[-1]]
    else:
        parent[keys[-1]] = value
    return document


def error_lines(document: dict) -> list[str]:
    with pytest.raises(ManifestError) as raised:
        validate(document)
    return list(raised.value.errors)


def load_error(data: bytes, source: str = "web.yaml") -> str:
    with pytest.raises(ManifestError) as raised:
        load_documents(data, source)
    return str(raised.value)


CONTAINER = "spec.template.spec.containers[0]"

# ---------------------------------------------------------------- valid manifests


@pytest.mark.parametrize(
    ("document", "kind"),
    [
        (make_deployment(), Deployment),
        (make_deployment(api_version="apps/v1"), Deployment),
        (make_pod(), Pod),
        (make_pod(api_version="dockyard.io/v1"), Pod),
        (make_node(), Node),
    ],
    ids=["dockyard-deployment", "kubernetes-apps-v1-deployment", "kubernetes-v1-pod", "dockyard-pod", "node"],
)
def test_valid_manifest_becomes_its_kind_with_dockyard_api_version(document, kind):
    resource = validate(document)

    assert type(resource) is kind
    assert resource.api_version == "dockyard.io/v1"
    assert resource.metadata.name == document["metadata"]["name"]


def test_namespace_defaults_for_namespaced_kinds_and_is_cleared_for_nodes():
    assert validate(make_pod()).metadata.namespace == "default"
    assert validate(changed(make_pod(), "metadata.namespace", "shop")).metadata.namespace == "shop"
    assert validate(changed(make_node(), "metadata.namespace", "shop")).metadata.namespace == ""


KUBERNETES_DEPLOYMENT = b"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
  labels:
    tier: backend
    app: api
spec:
  replicas: 2
  selector:
    matchLabels:
      app: api
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: api, tier: backend}
    spec:
      restartPolicy: Always
      containers:
      - name: api
        image: registry.local:5000/shop/api:2.3
        args: ["--port", "8080"]
        env:
        - {name: LOG_LEVEL, value: info}
        ports:
        - {containerPort: 8080, name: http}
        resources:
          requests: {memory: 256Mi, cpu: 0.5}
          limits: {memory: 512Mi, cpu: 1}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 5
        livenessProbe:
          tcpSocket: {port: 8080}
"""


def test_kubernetes_deployment_is_read_into_its_struct():
    [deployment] = load_manifests(KUBERNETES_DEPLOYMENT, "api.yaml")

    container = deployment.spec.template.spec.containers[0]
    assert deployment.metadata.namespace == "shop"
    assert deployment.spec.replicas == 2
    assert deployment.spec.strategy.rolling_update.max_surge == 1
    assert container.readiness_probe.http_get.port == "http"
    assert container.liveness_probe.tcp_socket.port == 8080
    # numbers given for quantities are stored as strings, mappings sorted by key
    assert container.resources.requests == {"cpu": "0.5", "memory": "256Mi"}
    assert list(container.resources.requests) == ["cpu", "memory"]
    assert list(deployment.metadata.labels) == ["app", "tier"]
    assert container.resources.limits["cpu"] == "1"


KUBECTL_DRY_RUN_OUTPUT = b"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: web
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: web
    spec:
      containers:
      - image: nginx
        name: nginx
        resources: {}
status: {}
"""


def test_kubectl_create_dry_run_output_is_accepted():
    [deployment] = load_manifests(KUBECTL_DRY_RUN_OUTPUT, "web.yaml")

    assert deployment.spec.template.spec.containers[0].image == "nginx"


def test_status_and_server_owned_metadata_in_input_are_dropped():
    document = make_pod()
    document["metadata"].update(
        uid="3f1c", generation=7, resourceVersion="42", creationTimestamp="2025-01-01T00:00:00Z", managedFields=[]
    )
    document["status"] = {"phase": "Running", "podIP": "10.0.0.7"}

    pod = validate(document)

    assert (pod.metadata.uid, pod.metadata.generation, pod.metadata.resource_version) == ("", 0, "")
    assert pod.metadata.creation_timestamp == ""
    assert pod.status == PodStatus()


def test_validate_does_not_change_its_input():
    document = make_deployment(containers=[make_container(resources={"requests": {"cpu": 1}})])
    before = copy.deepcopy(document)

    validate(document)

    assert document == before


def test_encoding_is_canonical_whatever_the_input_key_order():
    forward = make_pod(
        containers=[make_container(resources={"requests": {"cpu": "1", "memory": "1Gi"}})],
        nodeSelector={"disk": "ssd", "zone": "a"},
    )
    backward = copy.deepcopy(forward)
    backward["spec"]["nodeSelector"] = {"zone": "a", "disk": "ssd"}
    backward["spec"]["containers"][0]["resources"]["requests"] = {"memory": "1Gi", "cpu": "1"}

    assert msgspec.json.encode(validate(forward)) == msgspec.json.encode(validate(backward))


def test_kinds_and_kubectl_aliases():
    assert KINDS == {"Deployment": Deployment, "Node": Node, "Pod": Pod}
    assert {alias: KIND_ALIASES[alias] for alias in ("deploy", "po", "no", "nodes")} == {
        "deploy": "Deployment",
        "po": "Pod",
        "no": "Node",
        "nodes": "Node",
    }
    assert (Deployment.NAMESPACED, Pod.NAMESPACED, Node.NAMESPACED) == (True, True, False)


# ---------------------------------------------------------------- refused manifests

REFUSED = [
    ("kind-missing", changed(make_pod(), "kind", _REMOVE), "kind: required field is missing"),
    (
        "kind-unknown",
        changed(make_pod(), "kind", "Service"),
        'kind: "Service" is not supported (supported: Deployment, Node, Pod)',
    ),
    (
        "api-version-unknown",
        make_deployment(api_version="extensions/v1beta1"),
        'apiVersion: "extensions/v1beta1" is not supported for Deployment (supported: dockyard.io/v1, apps/v1)',
    ),
    (
        "api-version-of-another-kind",
        make_pod(api_version="apps/v1"),
        'apiVersion: "apps/v1" is not supported for Pod (supported: dockyard.io/v1, v1)',
    ),
    ("api-version-missing", changed(make_pod(), "apiVersion", _REMOVE), "apiVersion: required field is missing"),
    ("name-missing", changed(make_pod(), "metadata.name", _REMOVE), "metadata.name: required field is missing"),
    ("metadata-missing", changed(make_pod(), "metadata", _REMOVE), "metadata: required field is missing"),
    (
        "selector-missing",
        changed(make_deployment(), "spec.selector", _REMOVE),
        "spec.selector: required field is missing",
    ),
    (
        "container-name-missing",
        changed(make_pod(), "spec.containers[0].name", _REMOVE),
        "spec.containers[0].name: required field is missing",
    ),
    ("replicas-not-a-number", make_deployment(replicas="three"), "spec.replicas: expected int, got str"),
    ("replicas-a-float", make_deployment(replicas=2.5), "spec.replicas: expected int, got float"),
    (
        "containers-not-a-list",
        changed(make_pod(), "spec.containers", {"name": "web"}),
        "spec.containers: expected array, got object",
    ),
    (
        "port-a-string",
        make_pod(containers=[make_container(ports=[{"containerPort": "80"}])]),
        "spec.containers[0].ports[0].containerPort: expected int, got str",
    ),
    (
        "label-value-a-number",
        changed(make_pod(), "metadata.labels", {"version": 1.0}),
        "metadata.labels.version: expected str, got float",
    ),
    (
        "bad-quantity",
        make_deployment(containers=[make_container(resources={"requests": {"cpu": "lots"}})]),
        f'{CONTAINER}.resources.requests.cpu: "lots" is not a quantity',
    ),
    (
        "negative-quantity",
        make_deployment(containers=[make_container(resources={"limits": {"memory": "-1Gi"}})]),
        f'{CONTAINER}.resources.limits.memory: "-1Gi" must not be negative',
    ),
    (
        "unknown-resource-name",
        make_pod(containers=[make_container(resources={"limits": {"nvidia.com/gpu": 1}})]),
        'spec.containers[0].resources.limits.nvidia.com/gpu: "nvidia.com/gpu" is not one of'
        " cpu, ephemeral-storage, memory, pods",
    ),
    (
        "requests-above-limits",
        make_pod(containers=[make_container(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}})]),
        'spec.containers[0].resources.requests.cpu: "2" is more than limits.cpu "1500m"',
    ),
    ("pod-name-with-dot", make_pod(name="web.1"), 'metadata.name: "web.1" is not a DNS-1123 label'),
    ("uppercase-name", make_deployment(name="Web"), 'metadata.name: "Web" is not a DNS-1123 label'),
    ("node-name-uppercase", make_node(name="Node-1"), 'metadata.name: "Node-1" is not a DNS-1123 subdomain'),
    ("long-name", make_pod(name="a" * 64), "is not a DNS-1123 label"),
    (
        "bad-namespace",
        changed(make_pod(), "metadata.namespace", "my_ns"),
        'metadata.namespace: "my_ns" is not a DNS-1123 label',
    ),
    (
        "bad-label-key",
        changed(make_pod(), "metadata.labels", {"-app": "web"}),
        'metadata.labels.-app: "-app" is not a valid key',
    ),
    (
        "bad-label-value",
        changed(make_pod(), "metadata.labels", {"app": "web site"}),
        'metadata.labels.app: "web site" is not a valid label value',
    ),
    ("no-containers", make_pod(containers=[]), "spec.containers: at least one container is required"),
    (
        "duplicate-container-names",
        make_pod(containers=[make_container("web"), make_container("web")]),
        'spec.containers[1].name: "web" is already the name of another container',
    ),
    (
        "port-out-of-range",
        make_pod(containers=[make_container(ports=[{"containerPort": 70000}])]),
        "spec.containers[0].ports[0].containerPort: must be at most 65535, got 70000",
    ),
    (
        "port-zero",
        make_pod(containers=[make_container(ports=[{"containerPort": 0}])]),
        "spec.containers[0].ports[0].containerPort: must be 1 or more, got 0",
    ),
    ("negative-replicas", make_deployment(replicas=-1), "spec.replicas: must be 0 or more, got -1"),
    (
        "empty-selector",
        changed(make_deployment(), "spec.selector.matchLabels", {}),
        "spec.selector.matchLabels: at least one label is required",
    ),
    (
        "selector-does-not-match-template",
        changed(make_deployment(), "spec.selector.matchLabels", {"app": "other"}),
        "spec.selector.matchLabels: does not match spec.template.metadata.labels",
    ),
    (
        "probe-with-two-handlers",
        make_pod(
            containers=[make_container(livenessProbe={"tcpSocket": {"port": 80}, "exec": {"command": ["true"]}})]
        ),
        "spec.containers[0].livenessProbe: exactly one of exec, httpGet, tcpSocket is required (got 2)",
    ),
    (
        "probe-without-handler",
        make_pod(containers=[make_container(readinessProbe={"periodSeconds": 5})]),
        "spec.containers[0].readinessProbe: exactly one of exec, httpGet, tcpSocket is required (got 0)",
    ),
    (
        "restart-policy-unknown",
        make_pod(restartPolicy="Sometimes"),
        'spec.restartPolicy: "Sometimes" is not one of Always, OnFailure, Never',
    ),
    (
        "deployment-restart-policy-never",
        changed(make_deployment(), "spec.template.spec.restartPolicy", "Never"),
        'spec.template.spec.restartPolicy: "Never" is not supported in a Deployment (only Always)',
    ),
    (
        "strategy-unknown",
        make_deployment(strategy={"type": "BlueGreen"}),
        'spec.strategy.type: "BlueGreen" is not one of RollingUpdate, Recreate',
    ),
    (
        "recreate-with-rolling-update",
        make_deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
        "spec.strategy.rollingUpdate: may not be set when spec.strategy.type is Recreate",
    ),
    (
        "rolling-update-bad-amount",
        make_deployment(strategy={"rollingUpdate": {"maxSurge": "a lot"}}),
        'spec.strategy.rollingUpdate.maxSurge: "a lot" is not a count or a percentage',
    ),
    (
        "rolling-update-all-zero",
        make_deployment(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
        "spec.strategy.rollingUpdate: maxSurge and maxUnavailable may not both be 0",
    ),
    (
        "image-pull-policy-unknown",
        make_pod(containers=[make_container(imagePullPolicy="Sometimes")]),
        'spec.containers[0].imagePullPolicy: "Sometimes" is not one of Always, IfNotPresent, Never',
    ),
    (
        "taint-effect-unknown",
        make_node(taints=[{"key": "dedicated", "value": "gpu", "effect": "NoPlease"}]),
        'spec.taints[0].effect: "NoPlease" is not one of NoSchedule, PreferNoSchedule, NoExecute',
    ),
    (
        "volume-name-a-path",
        make_pod(volumes=[{"name": "/etc", "emptyDir": {}}]),
        'spec.volumes[0].name: "/etc" is not a DNS-1123 label',
    ),
    (
        "volume-name-dot-dot",
        make_pod(volumes=[{"name": "../../..", "emptyDir": {}}]),
        'spec.volumes[0].name: "../../.." is not a DNS-1123 label',
    ),
    (
        "duplicate-volume-names",
        make_pod(volumes=[{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]),
        'spec.volumes[1].name: "data" is already the name of another volume',
    ),
    (
        "empty-dir-medium-unknown",
        make_pod(volumes=[{"name": "data", "emptyDir": {"medium": "HugePages"}}]),
        'spec.volumes[0].emptyDir.medium: "HugePages" is not "" (the node\'s disk) or "Memory"',
    ),
    (
        "volume-mount-name-a-path",
        make_pod(containers=[make_container(volumeMounts=[{"name": "../x", "mountPath": "/data"}])]),
        'spec.containers[0].volumeMounts[0].name: "../x" is not a DNS-1123 label',
    ),
    (
        "volume-mount-path-relative",
        make_deployment(containers=[make_container(volumeMounts=[{"name": "data", "mountPath": "data"}])]),
        f'{CONTAINER}.volumeMounts[0].mountPath: "data" must be an absolute path without \'..\'',
    ),
    (
        "volume-mount-of-no-volume",
        changed(make_deployment(containers=[make_container(volumeMounts=[{"name": "cache", "mountPath": "/c"}])]),
                "spec.template.spec.volumes", [{"name": "scratch", "emptyDir": {}}]),
        f'{CONTAINER}.volumeMounts[0].name: "cache" is not a volume of the pod',
    ),
    (
        "run-as-user-negative",
        make_pod(containers=[make_container(securityContext={"runAsUser": -5})]),
        "spec.containers[0].securityContext.runAsUser: must be 0 or more, got -5",
    ),
    (
        "run-as-group-negative",
        make_deployment(containers=[make_container(securityContext={"runAsGroup": -1})]),
        f"{CONTAINER}.securityContext.runAsGroup: must be 0 or more, got -1",
    ),
    (
        "volume-mount-path-dot-dot",
        make_pod(containers=[make_container(volumeMounts=[{"name": "data", "mountPath": "/data/../etc"}])]),
        'spec.containers[0].volumeMounts[0].mountPath: "/data/../etc" must be an absolute path without \'..\'',
    ),
    (
        "toleration-exists-with-value",
        make_pod(tolerations=[{"key": "dedicated", "operator": "Exists", "value": "gpu"}]),
        "spec.tolerations[0].value: must be empty when operator is Exists",
    ),
]


@pytest.mark.parametrize(("document", "message"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_refused_manifest_names_the_field_and_the_problem(document, message):
    errors = error_lines(document)

    assert any(message in error for error in errors), errors


def test_unsupported_kubernetes_fields_are_all_listed_in_one_error():
    document = make_deployment(api_version="apps/v1", progressDeadlineSeconds=600)
    document["metadata"]["ownerReferences"] = []
    pod_spec = document["spec"]["template"]["spec"]
    pod_spec["volumes"] = [{"name": "data", "hostPath": {"path": "/data"}}]
    pod_spec["containers"][0]["securityContext"] = {"runAsNonRoot": True}
    pod_spec["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["true"]}}}

    errors = error_lines(document)

    assert errors == [
        "unsupported fields: metadata.ownerReferences, spec.template.spec.containers[0].securityContext.runAsNonRoot,"
        " spec.template.spec.containers[0].lifecycle, spec.template.spec.volumes[0].hostPath,"
        " spec.progressDeadlineSeconds"
    ]


def test_match_expressions_are_an_unsupported_field():
    document = changed(make_deployment(), "spec.selector.matchExpressions", [])

    assert error_lines(document) == ["unsupported field: spec.selector.matchExpressions"]


def test_every_semantic_problem_is_reported_not_just_the_first():
    document = make_deployment(
        name="Web",
        replicas=-2,
        containers=[
            make_container("web", ports=[{"containerPort": 0}]),
            make_container("web", imagePullPolicy="Sometimes"),
        ],
    )

    errors = error_lines(document)

    assert errors == [
        'metadata.name: "Web" is not a DNS-1123 label (lowercase letters, digits and \'-\', starting and ending'
        " with a letter or digit, at most 63 characters)",
        "spec.replicas: must be 0 or more, got -2",
        f"{CONTAINER}.ports[0].containerPort: must be 1 or more, got 0",
        'spec.template.spec.containers[1].name: "web" is already the name of another container',
        'spec.template.spec.containers[1].imagePullPolicy: "Sometimes" is not one of Always, IfNotPresent, Never',
    ]


def test_error_lines_name_the_source_and_document():
    data = yaml.safe_dump_all(
        [
            make_pod("ok"),
            make_deployment(containers=[make_container(resources={"requests": {"cpu": "lots"}})]),
        ]
    ).encode()

    with pytest.raises(ManifestError) as raised:
        load_manifests(data, "web.yaml")

    assert raised.value.source == "web.yaml"
    assert str(raised.value) == (
        'web.yaml: document 2: spec.template.spec.containers[0].resources.requests.cpu: "lots" is not a quantity'
    )


def test_errors_of_several_documents_come_together_one_line_each():
    data = yaml.safe_dump_all([make_pod(name="A"), {"kind": "Service"}]).encode()

    with pytest.raises(ManifestError) as raised:
        load_manifests(data, "all.yaml")

    assert str(raised.value).splitlines() == [
        'all.yaml: document 1: metadata.name: "A" is not a DNS-1123 label (lowercase letters, digits and \'-\','
        " starting and ending with a letter or digit, at most 63 characters)",
        'all.yaml: document 2: kind: "Service" is not supported (supported: Deployment, Node, Pod)',
    ]


def test_validate_can_name_where_the_document_came_from():
    with pytest.raises(ManifestError) as raised:
        validate(make_deployment(replicas="three"), source="web.yaml", where="document 3")

    assert str(raised.value) == 'web.yaml: document 3: spec.replicas: expected int, got str "three"'


# ---------------------------------------------------------------- loading documents


def test_every_type_error_is_reported_not_just_the_first():
    document = make_deployment(replicas="three", containers=[
        make_container("web", ports=[{"containerPort": "eighty"}, {"containerPort": 81, "hostPort": 8.5}]),
        {"image": "nginx", "args": "not-a-list"},
    ])
    document["metadata"]["labels"] = {"tier": 1}

    assert error_lines(document) == [
        "metadata.labels.tier: expected str, got int 1",
        'spec.replicas: expected int, got str "three"',
        f'{CONTAINER}.ports[0].containerPort: expected int, got str "eighty"',
        f"{CONTAINER}.ports[1].hostPort: expected int, got float 8.5",
        'spec.template.spec.containers[1].args: expected array, got str "not-a-list"',
        "spec.template.spec.containers[1].name: required field is missing",
    ]


@pytest.mark.parametrize(("document", "message"), [
    (make_deployment(replicas="three"), 'spec.replicas: expected int, got str "three"'),
    (changed(make_pod(), "spec.containers", {"name": "web"}), "spec.containers: expected array, got object"),
    (changed(make_pod(), "spec.containers[0].name", _REMOVE), "spec.containers[0].name: required field is missing"),
    (changed(make_pod(), "metadata", "web"), 'metadata: expected object, got str "web"'),
], ids=["a-field", "a-list-that-is-not", "a-missing-field", "an-object-that-is-not"])
def test_a_single_type_error_reads_as_msgspec_gives_it(document, message):
    assert error_lines(document) == [message]


def test_document_over_the_size_limit_is_refused_before_parsing():
    # Unparseable as YAML on purpose: only the size check may answer.
    opening = b"kind: Pod\nitems: "
    data = opening + b"[" * (10 * 1024 * 1024 - len(opening))

    assert load_error(data) == "web.yaml: document 1 is 10.0 MiB; the limit is 1.0 MiB"


def test_size_limit_applies_to_each_document_not_the_file():
    pod = yaml.safe_dump(make_pod()).encode()
    almost_a_mebibyte = pod + b"note: " + b"a" * (MAX_DOCUMENT_BYTES - len(pod) - 100) + b"\n"

    documents = load_documents(b"---\n".join([almost_a_mebibyte] * 3), "big.yaml")

    assert len(documents) == 3


def test_non_utf8_bytes_name_the_byte_offset():
    assert load_error(b"kind: Pod\n\xff\xfe") == "web.yaml: document 1: not valid UTF-8 at byte 10"


def test_non_utf8_offset_counts_from_the_start_of_the_file():
    data = b"kind: Pod\n---\nkind: Node\nname: caf\xe9\n"

    assert load_error(data) == "web.yaml: document 2: not valid UTF-8 at byte 34"


def test_yaml_syntax_error_gives_the_line_and_column_in_the_file():
    data = b"kind: Pod\n---\nkind: Pod\nmetadata:\n  name: web\n   image: nginx\n"

    assert load_error(data) == (
        "web.yaml: document 2: line 6, column 9: mapping values are not allowed in this context"
    )


@pytest.mark.parametrize(
    ("data", "got"),
    [(b"- kind: Pod\n", "a sequence"), (b"just a sentence\n", "a string"), (b"42\n", "int")],
    ids=["sequence", "string", "number"],
)
def test_a_document_must_be_a_mapping(data, got):
    assert load_error(data) == f"web.yaml: document 1: expected a mapping, got {got}"


def test_list_document_is_expanded_into_its_items():
    data = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [make_pod("a"), make_node()]}).encode()

    resources = load_manifests(data, "list.yaml")

    assert [(resource.kind, resource.metadata.name) for resource in resources] == [
        ("Pod", "a"),
        ("Node", "node-1.rack-a"),
    ]


def test_errors_in_a_list_item_name_the_item():
    data = json.dumps({"kind": "List", "items": [make_pod("a"), make_pod("B")]}).encode()

    with pytest.raises(ManifestError) as raised:
        load_manifests(data, "list.json")

    assert str(raised.value).startswith('list.json: document 1: items[1]: metadata.name: "B" is not')


def test_multi_document_yaml_skips_empty_documents_and_keeps_their_numbers():
    data = (
        b"# the web tier\n---\n"
        + yaml.safe_dump(make_pod("a")).encode()
        + b"---\n---\n# nothing here\n---\n"
        + yaml.safe_dump(make_pod("b", containers=[])).encode()
    )

    assert [document["metadata"]["name"] for document in load_documents(data, "web.yaml")] == ["a", "b"]
    with pytest.raises(ManifestError) as raised:
        load_manifests(data, "web.yaml")
    assert str(raised.value) == "web.yaml: document 4: spec.containers: at least one container is required"


def test_json_is_accepted():
    [pod] = load_manifests(json.dumps(make_pod("from-json")).encode(), "pod.json")

    assert pod.metadata.name == "from-json"


def test_documents_are_returned_as_written():
    document = make_deployment()

    assert load_documents(yaml.safe_dump(document).encode(), "web.yaml") == [document]


def test_utf8_byte_order_mark_is_allowed():
    assert load_documents(b"\xef\xbb\xbf---\nkind: Pod\n", "bom.yaml") == [{"kind": "Pod"}]


def test_alias_bomb_is_refused_before_it_is_expanded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, 9)]

    assert load_error("\n".join(lines).encode()) == (
        "web.yaml: document 1: more than 1000000 values once aliases are expanded"
    )


def test_recursive_alias_is_refused():
    assert load_error(b"kind: Pod\nloop: &loop [*loop]\n") == (
        "web.yaml: document 1: alias *loop refers to an undefined or enclosing anchor"
    )


def test_deep_nesting_is_refused():
    data = b"kind: Pod\nx:\n" + b"".join(b"  " * depth + b"- \n" for depth in range(1, 150))

    assert load_error(data) == "web.yaml: document 1: nesting is deeper than 100 levels"


def test_a_few_aliases_are_fine():
    data = b"kind: Pod\nbase: &env [{name: A, value: b}]\nagain: *env\n"

    assert load_documents(data, "web.yaml") == [
        {"kind": "Pod", "base": [{"name": "A", "value": "b"}], "again": [{"name": "A", "value": "b"}]}
    ]


# ---------------------------------------------------------------- properties of the structs

RESOURCES = [deployments(), pods(), nodes()]
property_settings = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_submitted(resource: Resource) -> Resource:
    """What a resource looks like once submitted as a manifest: server-owned fields and status cleared."""
    metadata = msgspec.structs.replace(
        resource.metadata, uid="", generation=0, resource_version="", creation_timestamp=""
    )
    status = {Deployment: DeploymentStatus, Pod: PodStatus, Node: NodeStatus}[type(resource)]()
    return msgspec.structs.replace(resource, metadata=metadata, status=status)


@pytest.mark.parametrize("resources", RESOURCES, ids=["deployment", "pod", "node"])
@property_settings
@given(data=st.data())
def test_valid_resource_round_trips_exactly(resources, data):
    """Three properties of every valid resource: its JSON round-trips exactly and encodes
    deterministically; validating its Kubernetes form gives it back as submitted (server
    fields and status cleared), byte for byte; and so does reading it from a YAML file."""
    resource = data.draw(resources)
    submitted = as_submitted(resource)

    encoded = msgspec.json.encode(resource)
    assert msgspec.json.decode(encoded, type=type(resource)) == resource
    assert msgspec.json.encode(msgspec.json.decode(encoded, type=type(resource))) == encoded
    assert msgspec.json.encode(resource) == encoded

    validated = validate(to_kubernetes_dict(resource))
    assert validated == submitted
    assert msgspec.json.encode(validated) == msgspec.json.encode(submitted)

    yaml_file = yaml.safe_dump_all([to_kubernetes_dict(resource)] * 2).encode()
    assert load_manifests(yaml_file, "dump.yaml") == [submitted, submitted]
