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
                                 "http://x:70000"],
                         ids=["a-word", "host-port", "ftp", "no-host", "path-only", "port-not-a-number",
                              "port-out-of-range"])
def test_anything_else_is_refused_naming_what_was_given(url):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        registry_url(url)
    assert str(refused.value) == f'expected a URL such as http://127.0.0.1:5000, got "{url}"'


def test_argparse_says_which_flag_and_exits_2(capsys):
    from dockyard.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["up", "--registry", "not-a-url"])
    assert exited.value.code == 2
    assert ('error: argument --registry: expected a URL such as http://127.0.0.1:5000, got "not-a-url"'
            in capsys.readouterr().err)
