"""Hypothesis strategies for valid manifest structs (Deployment, Pod, Node), kept small."""

from datetime import datetime

import msgspec
from hypothesis import strategies as st

from dockyard.schemas.manifests import (
    TAINT_EFFECTS,
    Condition,
    Container,
    ContainerPort,
    ContainerStatus,
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    DeploymentStrategy,
    EnvVar,
    ExecAction,
    HTTPGetAction,
    LabelSelector,
    Node,
    NodeSpec,
    NodeStatus,
    ObjectMeta,
    Pod,
    PodSpec,
    PodStatus,
    PodTemplateSpec,
    Probe,
    ResourceRequirements,
    RollingUpdate,
    Taint,
    TCPSocketAction,
    TemplateMeta,
    Toleration,
)
from dockyard.schemas.quantity import format_cpu, format_memory


def _sorted(mapping: dict) -> dict:
    # Validation stores mappings sorted by key; generated structs match that canonical form.
    return dict(sorted(mapping.items()))


dns_labels = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
dns_subdomains = st.lists(dns_labels, min_size=1, max_size=3).map(".".join)
label_keys = st.from_regex(r"([a-z]{1,6}\.io/)?[A-Za-z]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?", fullmatch=True)
label_values = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?)?", fullmatch=True)
labels = st.dictionaries(label_keys, label_values, max_size=3).map(_sorted)
annotations = st.dictionaries(label_keys, st.text(max_size=12), max_size=2).map(_sorted)
port_numbers = st.integers(1, 65535)
port_names = st.from_regex(r"[a-z]([a-z0-9]{0,5}-)?[a-z0-9]{1,5}", fullmatch=True)
timestamps = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)


def object_meta(name=dns_labels, namespace=dns_labels) -> st.SearchStrategy[ObjectMeta]:
    """Metadata, sometimes with the server-owned fields a stored object carries."""
    return st.builds(
        ObjectMeta,
        name=name,
        namespace=namespace,
        labels=labels,
        annotations=annotations,
        uid=st.just("") | st.uuids().map(str),
        generation=st.integers(0, 50),
        resource_version=st.just("") | st.integers(1, 10**6).map(str),
        creation_timestamp=st.just("") | timestamps,
    )


@st.composite
def resource_requirements(draw) -> ResourceRequirements:
    requests, limits = {}, {}
    for name, format_amount, largest in (("cpu", format_cpu, 64_000), ("memory", format_memory, 2**36)):
        request = draw(st.none() | st.integers(1, largest))
        limit = draw(st.none() | st.integers(request or 1, largest))
        if request is not None:
            requests[name] = format_amount(request)
        if limit is not None:
            limits[name] = format_amount(limit)
    return ResourceRequirements(requests=_sorted(requests), limits=_sorted(limits))


def probes() -> st.SearchStrategy[Probe]:
    handlers = st.one_of(
        st.builds(ExecAction, command=st.lists(words, min_size=1, max_size=3).map(tuple)).map(
            lambda action: {"exec": action}
        ),
        st.builds(
            HTTPGetAction,
            path=st.sampled_from(["/", "/healthz", "/ready"]),
            port=port_numbers | port_names,
            scheme=st.sampled_from(["HTTP", "HTTPS"]),
        ).map(lambda action: {"http_get": action}),
        st.builds(TCPSocketAction, port=port_numbers | port_names).map(lambda action: {"tcp_socket": action}),
    )
    return handlers.flatmap(
        lambda handler: st.builds(
            Probe,
            initial_delay_seconds=st.integers(0, 60),
            period_seconds=st.integers(1, 60),
            timeout_seconds=st.integers(1, 10),
            failure_threshold=st.integers(1, 10),
            **{name: st.just(action) for name, action in handler.items()},
        )
    )


def containers(name=dns_labels) -> st.SearchStrategy[Container]:
    return st.builds(
        Container,
        name=name,
        image=st.sampled_from(["", "nginx:1.27", "registry.local:5000/team/api@sha256:" + "a" * 64]),
        command=st.lists(words, max_size=2).map(tuple),
        args=st.lists(words, max_size=2).map(tuple),
        env=st.lists(
            st.builds(EnvVar, name=st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), value=words),
            max_size=2,
        ).map(tuple),
        ports=st.lists(
            st.builds(
                ContainerPort,
                container_port=port_numbers,
                name=st.just("") | port_names,
                protocol=st.sampled_from(["TCP", "UDP", "SCTP"]),
                host_port=st.just(0) | port_numbers,
            ),
            max_size=2,
        ).map(tuple),
        resources=resource_requirements(),
        liveness_probe=st.none() | probes(),
        readiness_probe=st.none() | probes().map(lambda probe: msgspec.structs.replace(probe, success_threshold=2)),
        startup_probe=st.none() | probes(),
        working_dir=st.sampled_from(["", "/app"]),
        image_pull_policy=st.sampled_from(["", "Always", "IfNotPresent", "Never"]),
    )


def tolerations() -> st.SearchStrategy[Toleration]:
    effects = st.sampled_from(("",) + TAINT_EFFECTS)
    return st.one_of(
        st.builds(Toleration, key=label_keys, operator=st.just("Equal"), value=label_values, effect=effects),
        st.builds(Toleration, key=st.just("") | label_keys, operator=st.just("Exists"), effect=effects),
    )


def pod_specs(restart_policies=st.sampled_from(["Always", "OnFailure", "Never"])) -> st.SearchStrategy[PodSpec]:
    return st.builds(
        PodSpec,
        containers=st.lists(containers(), min_size=1, max_size=3, unique_by=lambda container: container.name).map(
            tuple
        ),
        restart_policy=restart_policies,
        node_selector=labels,
        node_name=st.just("") | dns_subdomains,
        tolerations=st.lists(tolerations(), max_size=2).map(tuple),
        termination_grace_period_seconds=st.integers(0, 600),
        host_network=st.booleans(),
    )


conditions = st.builds(
    Condition,
    type=st.sampled_from(["Ready", "Available", "Progressing"]),
    status=st.sampled_from(["True", "False", "Unknown"]),
    reason=st.sampled_from(["", "MinimumReplicasAvailable"]),
    last_transition_time=st.just("") | timestamps,
)


def pods() -> st.SearchStrategy[Pod]:
    """Valid pods, some with a status as the node agent would report it."""
    statuses = st.builds(
        PodStatus,
        phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]),
        conditions=st.lists(conditions, max_size=2).map(tuple),
        container_statuses=st.lists(
            st.builds(
                ContainerStatus,
                name=dns_labels,
                ready=st.booleans(),
                restart_count=st.integers(0, 5),
                state=st.sampled_from(["waiting", "running", "terminated"]),
                message=st.just("") | st.text(max_size=20),
                exit_code=st.none() | st.integers(0, 255),
            ),
            max_size=2,
        ).map(tuple),
        host_ip=st.just("") | st.ip_addresses(v=4).map(str),
    )
    return st.builds(Pod, metadata=object_meta(), spec=pod_specs(), status=st.just(PodStatus()) | statuses)


@st.composite
def deployment_specs(draw) -> DeploymentSpec:
    template_labels = draw(st.dictionaries(label_keys, label_values, min_size=1, max_size=3).map(_sorted))
    selected = draw(st.lists(st.sampled_from(sorted(template_labels)), min_size=1, unique=True))
    return DeploymentSpec(
        replicas=draw(st.integers(0, 20)),
        selector=LabelSelector(match_labels=_sorted({key: template_labels[key] for key in selected})),
        template=PodTemplateSpec(
            metadata=TemplateMeta(labels=template_labels, annotations=draw(annotations)),
            spec=draw(pod_specs(restart_policies=st.just("Always"))),
        ),
        strategy=draw(strategies()),
        min_ready_seconds=draw(st.integers(0, 60)),
        revision_history_limit=draw(st.integers(0, 20)),
        paused=draw(st.booleans()),
    )


def strategies() -> st.SearchStrategy[DeploymentStrategy]:
    amounts = st.integers(0, 5) | st.integers(0, 100).map(lambda percent: f"{percent}%")
    rolling = st.builds(RollingUpdate, max_surge=amounts, max_unavailable=amounts).filter(
        lambda update: not (update.max_surge in (0, "0%") and update.max_unavailable in (0, "0%"))
    )
    return st.one_of(
        st.just(DeploymentStrategy()),
        st.just(DeploymentStrategy(type="Recreate")),
        st.builds(DeploymentStrategy, rolling_update=rolling),
    )


def deployments() -> st.SearchStrategy[Deployment]:
    """Valid deployments, some with a status as the controller would report it."""
    statuses = st.builds(
        DeploymentStatus,
        observed_generation=st.integers(0, 50),
        replicas=st.integers(0, 20),
        ready_replicas=st.integers(0, 20),
        conditions=st.lists(conditions, max_size=2).map(tuple),
    )
    return st.builds(
        Deployment, metadata=object_meta(), spec=deployment_specs(), status=st.just(DeploymentStatus()) | statuses
    )


@st.composite
def node_specs(draw) -> NodeSpec:
    taints = draw(
        st.lists(
            st.builds(Taint, key=label_keys, value=label_values, effect=st.sampled_from(TAINT_EFFECTS)),
            max_size=3,
            unique_by=lambda taint: (taint.key, taint.effect),
        )
    )
    capacity = {
        "cpu": format_cpu(draw(st.integers(1, 128)) * 1000),
        "memory": format_memory(draw(st.integers(1, 512)) * 2**30),
        "pods": str(draw(st.integers(1, 250))),
    }
    return NodeSpec(capacity=capacity, taints=tuple(taints), unschedulable=draw(st.booleans()))


def nodes() -> st.SearchStrategy[Node]:
    """Valid nodes (cluster-scoped: no namespace), some with a status as the node agent reports it."""
    statuses = st.builds(
        NodeStatus,
        capacity=st.just({"cpu": "4", "memory": "16Gi", "pods": "110"}),
        allocatable=st.just({"cpu": "3800m", "memory": "15Gi", "pods": "110"}),
        conditions=st.lists(conditions, max_size=2).map(tuple),
    )
    return st.builds(
        Node,
        metadata=object_meta(name=dns_subdomains, namespace=st.just("")),
        spec=node_specs(),
        status=st.just(NodeStatus()) | statuses,
    )
