"""Label selectors in kubectl's syntax."""

from __future__ import annotations

import pytest

from dockyard.selectors import SelectorError, matches, parse_selector

LABELS = {"app": "web", "tier": "frontend"}


@pytest.mark.parametrize(
    "selector,expected",
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web, db)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("app=web,tier in (frontend),!legacy", True),
    ],
    ids=lambda v: str(v),
)
def test_matches(selector, expected):
    assert matches(LABELS, parse_selector(selector)) is expected


@pytest.mark.parametrize("selector", ["app=(", "a b c", "=x"])
def test_unparseable_selectors_are_refused(selector):
    with pytest.raises(SelectorError):
        parse_selector(selector)
