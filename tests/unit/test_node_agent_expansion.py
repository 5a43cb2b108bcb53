"""`$(VAR)` expansion, port variables and a container's environment."""

import pytest

from dockyard.schemas.manifests import Container, ContainerPort, EnvVar
from dockyard.services.node_agent.expansion import container_argv, container_env, expand, port_env_name

VARS = {"PORT": "8080", "NAME": "web", "EMPTY": ""}


@pytest.mark.parametrize("text, expected", [
    ("$(PORT)", "8080"),
    ("--port=$(PORT)", "--port=8080"),
    ("$(NAME):$(PORT)", "web:8080"),
    ("$(EMPTY)x", "x"),
    ("$(MISSING)", "$(MISSING)"),
    ("$$(PORT)", "$(PORT)"),
    ("$$$(PORT)", "$8080"),
    ("$$", "$"),
    ("cost $5", "cost $5"),
    ("trailing $", "trailing $"),
    ("$(PORT", "$(PORT"),
    ("$(", "$("),
    ("$()", "$()"),
    ("no vars", "no vars"),
    ("", ""),
], ids=["alone", "inside", "two", "empty-value", "undefined-kept", "escaped", "escape-then-var", "double-dollar",
        "dollar-digit", "dollar-at-end", "unclosed", "open-only", "empty-name", "plain", "empty"])
def test_expand(text, expected):
    assert expand(text, VARS) == expected


@pytest.mark.parametrize("port, expected", [
    (ContainerPort(container_port=8080, name="http"), "DOCKYARD_PORT_HTTP"),
    (ContainerPort(container_port=9090, name="metrics-port"), "DOCKYARD_PORT_METRICS_PORT"),
    (ContainerPort(container_port=8080), "DOCKYARD_PORT_8080"),
], ids=["named", "dashes", "unnamed"])
def test_port_env_name(port, expected):
    assert port_env_name(port) == expected


def test_env_has_ports_then_container_vars_expanded_in_order():
    container = Container(name="web", command=("serve", "--port=$(DOCKYARD_PORT_HTTP)"), args=("$(GREETING)",),
                          ports=(ContainerPort(container_port=8080, name="http"), ContainerPort(container_port=9000)),
                          env=(EnvVar(name="URL", value="http://127.0.0.1:$(DOCKYARD_PORT_HTTP)/"),
                               EnvVar(name="GREETING", value="hi from $(URL)")))
    env = container_env(container, {"http": 31000, "9000": 31001}, "web-1", {"PATH": "/bin", "SECRET": "x"})
    assert env["PATH"] == "/bin" and "SECRET" not in env and env["HOSTNAME"] == "web-1"
    assert env["DOCKYARD_PORT_HTTP"] == "31000" and env["DOCKYARD_PORT_9000"] == "31001"
    assert env["GREETING"] == "hi from http://127.0.0.1:31000/"
    assert container_argv(container, env) == ["serve", "--port=31000", "hi from http://127.0.0.1:31000/"]


def test_args_alone_are_the_argv():
    assert container_argv(Container(name="c", args=("sleep", "1")), {}) == ["sleep", "1"]
