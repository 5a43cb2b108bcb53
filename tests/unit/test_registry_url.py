"""`--registry` takes an http(s) URL with a host, checked by argparse before anything starts."""

from __future__ import annotations

import argparse

import pytest

from dockyard.services.registry_indexer.options import registry_url


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "https://registry.example.com", "http://[::1]:5000/", ""],
                         ids=["http-port", "https", "ipv6", "none"])
def test_a_registry_url_is_taken_as_given(url):
    assert registry_url(url) == url


@pytest.mark.parametrize("url", ["not-a-url", "127.0.0.1:5000", "ftp://x", "http://", "http:///v2", "http://x:port",
                                 "http://x:70000", "http://a b", "http://x:5000/v2 ", "http://-x", "http://a..b",
                                 "http://a%20b", "http://[zz]:5000", "http://x\t:5000"],
                         ids=["a-word", "host-port", "ftp", "no-host", "path-only", "port-not-a-number",
                              "port-out-of-range", "space-in-host", "trailing-space", "host-starts-with-dash",
                              "empty-label", "escaped-space", "brackets-not-ipv6", "tab"])
def test_anything_else_is_refused_naming_what_was_given(url):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        registry_url(url)
    assert str(refused.value).startswith(f'expected a URL such as http://127.0.0.1:5000, got "{url}": ')


@pytest.mark.parametrize(("url", "reason"), [
    ("http://a b", "it holds a space or a control character"),
    ("http://a..b", '"a..b" is not a host name or an IP address'),
    ("ftp://x", "the scheme must be http or https"),
    ("http://x:0", "the port must be a number from 1 to 65535"),
], ids=["space", "bad-host", "scheme", "port-zero"])
def test_the_refusal_says_why(url, reason):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        registry_url(url)
    assert str(refused.value).endswith(f": {reason}")


@pytest.mark.parametrize("url", ["http://registry_1:5000", "http://localhost.:5000", "https://r.example.com/v2"],
                         ids=["compose-service-name", "fully-qualified-dot", "with-path"])
def test_host_names_people_use_are_taken(url):
    assert registry_url(url) == url


def test_argparse_says_which_flag_and_exits_2(capsys):
    from dockyard.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["up", "--registry", "not-a-url"])
    assert exited.value.code == 2
    assert ('error: argument --registry: expected a URL such as http://127.0.0.1:5000, got "not-a-url"'
            in capsys.readouterr().err)
