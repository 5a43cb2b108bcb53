"""What a container process is given: `$(VAR)` expansion, port variables and the environment."""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.schemas.manifests import Container, ContainerPort

PORT_ENV_PREFIX = "DOCKYARD_PORT_"
# From the agent's own environment, only what a plain process needs to find its tools.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`,
    and anything else (an undefined name, an unclosed `$(`) is left as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 == n:
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])
                break
            name = text[i + 2:end]
            out.append(variables[name] if name in variables else text[i:end + 1])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def port_key(port: ContainerPort) -> str:
    """How a port is named in hostPorts and probes: its name, else its number."""
    return port.name or str(port.container_port)


def port_env_name(port: ContainerPort) -> str:
    """`http` -> DOCKYARD_PORT_HTTP, `metrics-port` -> DOCKYARD_PORT_METRICS_PORT, unnamed 8080 -> DOCKYARD_PORT_8080."""
    return PORT_ENV_PREFIX + port_key(port).upper().replace("-", "_").replace(".", "_")


def port_variables(container: Container, host_ports: Mapping[str, int]) -> dict[str, str]:
    return {port_env_name(p): str(host_ports[port_key(p)]) for p in container.ports if port_key(p) in host_ports}


def container_env(container: Container, host_ports: Mapping[str, int], pod_name: str,
                  agent_env: Mapping[str, str]) -> dict[str, str]:
    """The process environment: a few inherited basics, the pod's name, the port variables,
    then the container's own env in order, each value expanded against what came before."""
    env = {k: agent_env[k] for k in INHERITED_ENV if k in agent_env}
    env["HOSTNAME"] = pod_name
    env["PYTHONUNBUFFERED"] = "1"  # logs arrive as written, not when a block buffer fills
    env.update(port_variables(container, host_ports))
    for var in container.env:
        env[var.name] = expand(var.value, env)
    return env


def container_argv(container: Container, env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded; without a command the args are the whole argv."""
    return [expand(part, env) for part in (*container.command, *container.args)]

