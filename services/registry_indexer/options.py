"""`dockyard up --registry ...`: the registry an embedded stack indexes, checked, and the indexer's flags for it."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import urllib.parse
from pathlib import Path

import msgspec


class RegistryOptionError(ValueError):
    """A `--registry*` flag that cannot work; the message names the flag and why."""


def registry_url(value: str) -> str:
    """A `--registry` flag's value as argparse checks it (`type=`), so a bad one stops the command before
    anything starts: an http(s) URL with a valid host. "" (no registry) passes."""
    if not value:
        return value
    problem = _registry_url_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f'expected a URL such as http://127.0.0.1:5000, got "{value}": {problem}')
    return value


# A DNS name's labels; `_` too, as container names used as hosts (compose services) may have one.
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                        r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")


def _registry_url_problem(value: str) -> str:
    if any(character.isspace() or not character.isprintable() for character in value):
        return "it holds a space or a control character"
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # brackets around something that is not an IPv6 address
        return "the host in brackets is not an IPv6 address"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    try:
        port = parts.port  # ValueError: not a number, or out of range
    except ValueError:
        return "the port must be a number from 1 to 65535"
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if not parts.hostname:
        return "it has no host"
    if not _is_host(parts.hostname):
        return f'"{parts.hostname}" is not a host name or an IP address'
    return ""


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)  # urlsplit has already taken an IPv6 address out of its brackets
        return True
    except ValueError:
        return _HOST_NAME.fullmatch(host) is not None


class RegistryOptions(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    username: str = ""
    password_file: str = ""  # absolute: the indexer runs from another directory
    insecure: bool = False
    webhook_port: int = 0  # where the registry's notifications go (0: none, crawls and resyncs only)

    @classmethod
    def checked(cls, url: str, username: str = "", password_file: str = "", insecure: bool = False,
                webhook_port: int = 0) -> RegistryOptions | None:
        """The options from `up`'s flags (the URL already checked by `registry_url`); None without --registry.
        RegistryOptionError for what cannot work."""
        if not url:
            given = [flag for flag, value in (("--registry-username", username),
                                               ("--registry-password-file", password_file),
                                               ("--registry-insecure", insecure),
                                               ("--registry-webhook-port", webhook_port)) if value]
            if given:
                raise RegistryOptionError(f"{given[0]}: needs --registry URL")
            return None
        if password_file:
            path = Path(password_file).expanduser().resolve()
            if not path.is_file() or not os.access(path, os.R_OK):
                raise RegistryOptionError(f"--registry-password-file: {password_file} is not a readable file")
            password_file = str(path)
        if not 0 <= webhook_port <= 65535:
            raise RegistryOptionError(f"--registry-webhook-port: {webhook_port} is not a port (0-65535)")
        return cls(url=url, username=username, password_file=password_file, insecure=insecure,
                   webhook_port=webhook_port)

    def indexer_arguments(self) -> list[str]:
        """`dockyard run registry-indexer`'s flags (its webhook token comes from $DOCKYARD_WEBHOOK_TOKEN)."""
        arguments = ["--registry", self.url]
        if self.username:
            arguments += ["--username", self.username]
        if self.password_file:
            arguments += ["--password-file", self.password_file]
        if self.insecure:
            arguments.append("--insecure")
        if self.webhook_port:
            arguments += ["--webhook-host", "0.0.0.0", "--webhook-port", str(self.webhook_port)]
        return arguments

    def up_arguments(self) -> list[str]:
        """The same options as `dockyard up` flags (a detached `up` starts another `up`)."""
        arguments = ["--registry", self.url]
        if self.username:
            arguments += ["--registry-username", self.username]
        if self.password_file:
            arguments += ["--registry-password-file", self.password_file]
        if self.insecure:
            arguments.append("--registry-insecure")
        if self.webhook_port:
            arguments += ["--registry-webhook-port", str(self.webhook_port)]
        return arguments
