"""The PromQL subset of alert rules: parsing, errors with their column, and evaluation against hand-computed values."""

from __future__ import annotations

import math

import pytest

from dockyard.services.monitoring.exposition import Family
from dockyard.services.monitoring.promql import (
    MAX_SAMPLES,
    Context,
    EvaluationError,
    History,
    PromQLError,
    Samples,
    evaluate,
    parse,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def family(name: str, label_names: tuple[str, ...], *rows: tuple) -> Family:
    return Family(name, "gauge", "", label_names, list(rows))


PODS = family("dockyard_pod_status_phase", ("namespace", "pod", "phase", "node"),
              ("default", "a", "Running", "n1", 1), ("default", "b", "Running", "n1", 1),
              ("default", "c", "Running", "n2", 1), ("kube", "d", "Pending", "n2", 1),
              ("kube", "e", "Running", "n2", 0))
MEMORY = family("dockyard_node_status_allocated", ("node", "resource"),
                ("n1", "memory", 6e9), ("n2", "memory", 2e9), ("n1", "cpu", 3.5), ("n2", "cpu", 0.5))
CAPACITY = family("dockyard_node_status_allocatable", ("node", "resource"),
                  ("n1", "memory", 8e9), ("n2", "memory", 8e9), ("n1", "cpu", 4), ("n2", "cpu", 4))


def at(text: str, *families: Family, now: float = T0, history: History | None = None):
    """The expression's value, its vectors' labels as dicts sorted for comparing."""
    result = evaluate(parse(text), Context(Samples(families or (PODS, MEMORY, CAPACITY)), history or History(), now))
    if isinstance(result, float):
        return result
    return [(dict(labels), value) for labels, value in sorted(result.items())]


# ---------------------------------------------------------------- selectors, aggregation, operators


@pytest.mark.parametrize("text,expected", [
    ('sum by (node) (dockyard_pod_status_phase{phase="Running"})', [({"node": "n1"}, 2), ({"node": "n2"}, 1)]),
    ('sum(dockyard_pod_status_phase{phase="Running"}) by (node)', [({"node": "n1"}, 2), ({"node": "n2"}, 1)]),
    ("sum without (pod, phase, node) (dockyard_pod_status_phase)",
     [({"namespace": "default"}, 3), ({"namespace": "kube"}, 1)]),
    ("count(dockyard_pod_status_phase)", [({}, 5)]),
    ('max by (resource) (dockyard_node_status_allocated)', [({"resource": "cpu"}, 3.5),
                                                           ({"resource": "memory"}, 6e9)]),
    ('min(dockyard_node_status_allocated{resource="cpu"})', [({}, 0.5)]),
    ('avg by (resource) (dockyard_node_status_allocated{resource="cpu"})', [({"resource": "cpu"}, 2.0)]),
    ('group by (node) (dockyard_pod_status_phase)', [({"node": "n1"}, 1), ({"node": "n2"}, 1)]),
    ('sum by (nothing) (dockyard_pod_status_phase{namespace="kube"})', [({}, 1)]),
], ids=["by-before", "by-after", "without", "count", "max-by", "min", "avg", "group", "by-absent-label"])
def test_aggregation(text, expected):
    assert at(text) == expected


@pytest.mark.parametrize("text,expected", [
    ('dockyard_node_status_allocated{resource="memory"} / 1e9 > 3', [({"node": "n1", "resource": "memory"}, 6.0)]),
    ('dockyard_node_status_allocated{resource="cpu"} > 3',
     [({"__name__": "dockyard_node_status_allocated", "node": "n1", "resource": "cpu"}, 3.5)]),
    ('dockyard_node_status_allocated{resource="cpu"} > bool 3',
     [({"node": "n1", "resource": "cpu"}, 1.0), ({"node": "n2", "resource": "cpu"}, 0.0)]),
    ('2 * dockyard_node_status_allocated{node="n2",resource="cpu"} + 1', [({"node": "n2", "resource": "cpu"}, 2.0)]),
    ('-dockyard_node_status_allocated{node="n2",resource="cpu"}', [({"node": "n2", "resource": "cpu"}, -0.5)]),
    ("2 ^ 3 ^ 2", 512.0),
    ("1 + 2 * 3 - 4 / 2", 5.0),
    ("(1 + 2) * 3 > bool 8", 1.0),
    ("7 % 4", 3.0),
    ("dockyard_node_status_allocated / dockyard_node_status_allocatable > 0.7",
     [({"node": "n1", "resource": "cpu"}, 0.875), ({"node": "n1", "resource": "memory"}, 0.75)]),
    ('dockyard_node_status_allocated{resource="cpu"} / on (node) dockyard_node_status_allocatable{resource="cpu"}',
     [({"node": "n1"}, 0.875), ({"node": "n2"}, 0.125)]),
    ('dockyard_node_status_allocated{resource="cpu"} > 1 and dockyard_node_status_allocated{node="n1"}',
     [({"__name__": "dockyard_node_status_allocated", "node": "n1", "resource": "cpu"}, 3.5)]),
    ('dockyard_node_status_allocated{resource="cpu"} unless on (node) dockyard_node_status_allocated > 5e9',
     [({"__name__": "dockyard_node_status_allocated", "node": "n2", "resource": "cpu"}, 0.5)]),
    ('dockyard_node_status_allocated{node="n1",resource="cpu"} or dockyard_node_status_allocated{resource="cpu"}',
     [({"__name__": "dockyard_node_status_allocated", "node": "n1", "resource": "cpu"}, 3.5),
      ({"__name__": "dockyard_node_status_allocated", "node": "n2", "resource": "cpu"}, 0.5)]),
    ('{__name__=~"dockyard_node_status_alloca.*", node="n2", resource="cpu"}',
     [({"__name__": "dockyard_node_status_allocatable", "node": "n2", "resource": "cpu"}, 4.0),
      ({"__name__": "dockyard_node_status_allocated", "node": "n2", "resource": "cpu"}, 0.5)]),
    ('abs(-dockyard_node_status_allocated{node="n2",resource="cpu"})', [({"node": "n2", "resource": "cpu"}, 0.5)]),
], ids=["scalar-division", "filter-keeps-name", "bool", "scalar-left", "negation", "power-right-assoc",
        "precedence", "parentheses", "modulo", "one-to-one", "on", "and", "unless", "or", "name-matcher", "abs"])
def test_operators(text, expected):
    assert at(text) == expected


def test_many_to_many_matching_is_an_evaluation_error():
    with pytest.raises(EvaluationError, match="many-to-many"):
        at("dockyard_node_status_allocated / on (node) dockyard_node_status_allocatable")


@pytest.mark.parametrize("text,expected", [
    ('absent(dockyard_node_status_allocated{node="gone", resource="cpu"})', [({"node": "gone", "resource": "cpu"}, 1)]),
    ('absent(dockyard_node_status_allocated{node=~"gone.*"})', [({}, 1)]),
    ('absent(dockyard_node_status_allocated{node="n1"})', []),
    ('absent(sum(dockyard_node_status_allocated{node="gone"}))', [({}, 1)]),
], ids=["labels-from-equalities", "regex-gives-no-label", "present", "of-an-expression"])
def test_absent(text, expected):
    assert at(text) == expected


def test_no_nodes_at_all_is_absent():
    assert at("absent(dockyard_node_status_allocated)", PODS) == [({}, 1)]


# ---------------------------------------------------------------- range functions over the history


def counter(value: float, name: str = "restarts") -> Family:
    return family(name, ("pod",), ("a", value))


def run(text: str, values: dict[float, float], history: History | None = None):
    """Evaluate `text` at each offset from T0 with the counter at its value; the last result."""
    history = history or History()
    expr, result = parse(text), None
    for offset, value in sorted(values.items()):
        result = evaluate(expr, Context(Samples([counter(value)]), history, T0 + offset))
    return [(dict(labels), value) for labels, value in sorted(result.items())]


STEADY = {t: float(t) for t in range(0, 61, 10)}  # +1 a second, sampled every 10 s
RESET = {0: 0.0, 10: 10.0, 20: 20.0, 30: 30.0, 40: 5.0, 50: 15.0, 60: 25.0}


@pytest.mark.parametrize("text,values,expected", [
    # window (0, 60]: samples at 10..60, 10 -> 60; extrapolated to the window's start (10 s, within 1.1
    # average intervals, and no further than the counter's zero): 50 * 60 / 50
    ("increase(restarts[1m])", STEADY, 60.0),
    ("rate(restarts[1m])", STEADY, 1.0),
    # the reset from 30 to 5 adds 30 back: 25 - 10 + 30 = 45, extrapolated by 60/50
    ("increase(restarts[1m])", RESET, 54.0),
    ("rate(restarts[1m])", RESET, 0.9),
    ("resets(restarts[1m])", RESET, 1.0),
    # delta is for gauges: no reset handling, 25 - 10 extrapolated by 60/50
    ("delta(restarts[1m])", RESET, 18.0),
    ("irate(restarts[1m])", RESET, 1.0),
    ("changes(restarts[1m])", {0: 1, 10: 1, 20: 2, 30: 2, 40: 3, 50: 3, 60: 1}, 3.0),
    ("max_over_time(restarts[1m])", RESET, 30.0),
    ("min_over_time(restarts[1m])", RESET, 5.0),
    ("avg_over_time(restarts[1m])", RESET, 17.5),
    ("sum_over_time(restarts[30s])", RESET, 45.0),
    ("count_over_time(restarts[30s])", RESET, 3.0),
    ("last_over_time(restarts[30s])", RESET, 25.0),
    # samples far from the window's start (40 s > 1.1 x 10 s): extrapolated by half an interval only
    ("increase(restarts[1m])", {40: 100.0, 50: 110.0, 60: 120.0}, 25.0),
    # a counter's zero is closer than the window's start: extrapolated to it (2 s before the first sample)
    ("increase(restarts[1m])", {40: 4.0, 50: 24.0, 60: 44.0}, 44.0),
], ids=["increase", "rate", "increase-reset", "rate-reset", "resets", "delta", "irate-reset", "changes",
        "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "count_over_time", "last_over_time",
        "sparse-start", "counter-zero"])
def test_range_functions(text, values, expected):
    ((labels, value),) = run(text, values)
    assert labels == {"pod": "a"}
    assert value == pytest.approx(expected)


def test_rate_needs_two_samples_in_its_window():
    assert run("rate(restarts[1m])", {0: 5.0}) == []
    assert run("rate(restarts[1m])", {0: 5.0, 100: 6.0}) == []  # the first is out of the window by then


def test_rules_reading_one_range_selector_record_each_evaluation_once():
    history, expr = History(), parse("changes(restarts[1m])")
    for offset, value in ((0, 1.0), (10, 2.0)):
        for _ in range(3):  # three rules with the same selector, one evaluation
            result = evaluate(expr, Context(Samples([counter(value)]), history, T0 + offset))
    assert list(result.values()) == [1.0] and history.samples() == 2


def test_the_history_keeps_only_the_selected_series_within_the_range():
    many = family("dockyard_pod_status_phase", ("pod", "phase"), *((f"p{i}", "Running", 1) for i in range(1000)))
    history = History()
    for offset in range(0, 600, 10):
        evaluate(parse('max_over_time(dockyard_pod_status_phase{pod=~"p1.?"}[1m])'),
                 Context(Samples([many, counter(offset)]), history, T0 + offset))
    assert history.series() == 11  # p1, p10..p19: not the other 989, not the counter
    assert history.samples() == 11 * 6  # (t - 60, t] at one sample each 10 s


def test_a_series_that_went_away_leaves_the_history_after_its_range():
    history, expr = History(), parse("max_over_time(restarts[30s])")
    evaluate(expr, Context(Samples([counter(1)]), history, T0))
    assert at("max_over_time(restarts[30s])", counter(1, "other"), now=T0 + 10, history=history) == [
        ({"pod": "a"}, 1.0)]  # still within its range: Prometheus too reads samples before staleness
    assert at("max_over_time(restarts[30s])", counter(1, "other"), now=T0 + 40, history=history) == []
    assert history.series() == 0


def test_a_series_keeps_at_most_max_samples():
    history, expr = History(), parse("count_over_time(restarts[1y])")
    for offset in range(MAX_SAMPLES + 10):
        result = evaluate(expr, Context(Samples([counter(offset)]), history, T0 + offset))
    assert list(result.values()) == [float(MAX_SAMPLES)]


def test_the_history_forgets_selectors_no_rule_reads():
    history = History()
    evaluate(parse("rate(restarts[1m])"), Context(Samples([counter(1)]), history, T0))
    history.keep_only(["restarts{}[5m]"])
    assert history.series() == 0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("text,column,reason", [
    ('sum(x{a="b"}})', 13, 'unexpected "}"'),
    ("sum(x", 6, "unexpected end of expression"),
    ("rate(x)", 6, "rate() needs a range vector, not an instant vector"),
    ("x[5m] > 1", 7, 'a range vector cannot be an operand of ">"'),
    ("x[5m]", 1, "gives a range vector"),
    ("1 > 2", 3, "needs `bool`"),
    ("x offset 5m", 3, 'unexpected "offset"'),
    ("topk(3, x)", 1, '"topk" is not supported'),
    ("histogram_quantile(0.9, x)", 1, 'unsupported function "histogram_quantile"'),
    ('x{a=~"("}', 6, "bad regular expression"),
    ('x{a="b}', 5, "unterminated quoted string"),
    ('{a=~".*"}', 1, "needs a metric name"),
    ("x[5m:1m]", 5, "subqueries are not supported"),
    ("sum by (node x", 14, 'unexpected "x"'),
    ("x and 1", 3, '"and" needs an instant vector on both sides'),
    ("x > bool", 9, "unexpected end of expression"),
    ("x + bool 1", 5, "`bool` only goes after a comparison"),
    ("x * on (a) group_left y", 12, "group_left"),
    ("", 1, "empty expression"),
    ("x $ 1", 3, "unexpected character '$'"),
], ids=["extra-brace", "unclosed", "rate-of-instant", "range-operand", "range-result", "scalar-comparison",
        "offset", "topk", "unknown-function", "bad-regex", "open-string", "no-name", "subquery",
        "unclosed-by", "set-with-scalar", "bool-without-operand", "bool-arithmetic", "group-left", "empty",
        "stray-character"])
def test_errors_name_the_column_and_reason(text, column, reason):
    with pytest.raises(PromQLError) as refused:
        parse(text)
    assert refused.value.position + 1 == column, str(refused.value)
    assert reason in str(refused.value)
    assert f"at column {column}" in str(refused.value)


@pytest.mark.parametrize("text", [
    "1e9", "0x1F > bool 0", "Inf > bool 1", "x{a='single', b=`raw`,}", "sum by () (x)", "x # a comment",
    "count without (a) (x) > 0", "ceil(x) + floor(x)", "vector(1)", "time() - 1",
])
def test_other_valid_expressions(text):
    parse(text)


def test_float_edge_cases_follow_go():
    assert at("1 / 0") == math.inf and at("-1 / 0") == -math.inf and math.isnan(at("0 / 0"))
    assert at("NaN == bool NaN") == 0.0
    assert at("0 ^ -1") == math.inf and at("10 ^ 400") == math.inf and math.isnan(at("(-8) ^ 0.5"))
