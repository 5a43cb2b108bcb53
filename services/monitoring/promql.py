"""The PromQL subset alert rules use: a recursive-descent parser and an evaluator over our own samples.

Supported, with Prometheus' semantics:
  selectors       `name{label="v", l2=~"re"}`, `{__name__="name"}`; range selectors `x[5m]` (in functions only)
  aggregation     sum, min, max, avg, count, group, with `by (l, ...)` / `without (l, ...)` before or after
                  the parenthesised expression
  range functions rate, increase, delta, irate, changes, resets, {min,max,avg,sum,count,last}_over_time
  other functions absent, abs, ceil, floor, time(), vector(s)
  binary          arithmetic `+ - * / % ^`, comparisons `== != > >= < <=` (filters; `bool` gives 0/1),
                  `and`, `or`, `unless`; vector with scalar, or one-to-one vector matching with `on (...)`
                  / `ignoring (...)`. Not supported (refused when parsed): `offset`, `@`, subqueries,
                  group_left/group_right, topk/quantile and the other functions.

Range selectors read the monitoring service's own history: `History` keeps, for each range selector
the rules use and only for the series it selects, the samples seen at each rule evaluation within its
range (at most MAX_SAMPLES a series). A window is (now - range, now], left-open as in Prometheus 3.
rate/increase/delta extrapolate as Prometheus does (to the window edges, or half an average sample
interval when the first or last sample is far from the edge; a counter never below zero), and rate,
increase, irate and resets add a counter's value back where it dropped (a reset). The simplification:
the samples are the evaluations' (every --eval-interval, from the service's start) rather than
scrapes', so a window is only as full as the service's uptime, and there are no staleness markers: a
series that went away is read until its last sample leaves the window.

Written here rather than taken from PyPI: what is there parses (promql-parser, a Rust binding) or
builds queries and calls Prometheus' HTTP API; none evaluates PromQL over samples in memory.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter

from dockyard.services.monitoring.exposition import Family

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs, `__name__` included
Vector = dict[Labels, float]
NAME = "__name__"
MAX_SAMPLES = 1024  # per series: a long range evaluated often sees only the latest ones


class PromQLError(ValueError):
    """An expression that cannot be used: what is wrong, the offset in the text it is at, what was expected."""

    def __init__(self, reason: str, position: int = 0, hint: str = ""):
        super().__init__(f"{reason} at column {position + 1}{': ' + hint if hint else ''}")
        self.reason = reason
        self.position = position
        self.hint = hint


class EvaluationError(RuntimeError):
    """An expression that cannot be computed on this data (many-to-many matching)."""


# ---------------------------------------------------------------- syntax tree


_GLOBAL_FLAGS = re.compile(r"^\(\?[aiLmsux]+\)")


def anchored(pattern: str) -> re.Pattern:
    """A label regex anchored at both ends, as Prometheus' are. Leading flags (`(?i)foo`, RE2's idiom for
    case-insensitive) stay in front: Python refuses global flags anywhere else. Raises re.error."""
    flags = _GLOBAL_FLAGS.match(pattern)
    head = flags.group(0) if flags else ""
    return re.compile(f"{head}(?:{pattern[len(head):]})\\Z")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str
    regex: re.Pattern | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "regex", anchored(self.value))

    def matches(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self.regex.match(actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True)
class VectorSelector:
    name: str  # "" when the name is given by a `__name__` matcher
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class MatrixSelector:
    vector: VectorSelector
    range: float  # seconds
    key: str  # its text: range selectors written alike share their history


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple


@dataclass(frozen=True)
class Aggregation:
    op: str
    expr: object
    grouping: tuple[str, ...]
    without: bool


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: object
    rhs: object
    bool_: bool = False
    on: bool = False
    matching: tuple[str, ...] = ()  # the on/ignoring labels


@dataclass(frozen=True)
class Negation:
    expr: object


SCALAR, VECTOR, MATRIX = "scalar", "instant vector", "range vector"


def kind(node) -> str:
    if isinstance(node, NumberLiteral):
        return SCALAR
    if isinstance(node, MatrixSelector):
        return MATRIX
    if isinstance(node, Negation):
        return kind(node.expr)
    if isinstance(node, Call):
        return FUNCTIONS[node.function][1]
    if isinstance(node, Binary):
        return SCALAR if kind(node.lhs) == kind(node.rhs) == SCALAR else VECTOR
    return VECTOR


def matrix_selectors(node) -> Iterable[MatrixSelector]:
    """Every range selector in the tree: what the history keeps samples for."""
    if isinstance(node, MatrixSelector):
        yield node
    for child in _children(node):
        yield from matrix_selectors(child)


def _children(node) -> tuple:
    if isinstance(node, Call):
        return node.args
    if isinstance(node, (Aggregation, Negation)):
        return (node.expr,)
    if isinstance(node, Binary):
        return (node.lhs, node.rhs)
    return ()


# ---------------------------------------------------------------- tokens


_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)(?!\w)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w:])
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:@])
""", re.VERBOSE)
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


@dataclass(frozen=True)
class Token:
    kind: str  # duration, number, string, ident, op, end
    text: str
    position: int


def tokens(text: str) -> list[Token]:
    found, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            quote = text[position]
            reason = "unterminated quoted string" if quote in "\"'`" else f"unexpected character {quote!r}"
            raise PromQLError(reason, position)
        if match.lastgroup != "space":
            found.append(Token(match.lastgroup, match.group(), position))
        position = match.end()
    found.append(Token("end", "", len(text)))
    return found


def seconds_of(duration: str) -> float:
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(duration))


def _unquote(token: Token) -> str:
    body = token.text[1:-1]
    if token.text[0] == "`":
        return body
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as exc:
        raise PromQLError(f"bad escape in string: {exc.reason}", token.position) from None


# ---------------------------------------------------------------- parser

AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group"}
UNSUPPORTED_AGGREGATIONS = {"topk", "bottomk", "quantile", "count_values", "stddev", "stdvar", "limitk",
                            "limit_ratio"}
COMPARISONS = ("==", "!=", ">", ">=", "<", "<=")
LEVELS = (("or",), ("and", "unless"), COMPARISONS, ("+", "-"), ("*", "/", "%", "atan2"), ("^",))
SET_OPERATORS = ("and", "or", "unless")


class Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokens(text)
        self.at = 0

    # -- token helpers

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.at += 1
        return token

    def accept(self, text: str) -> bool:
        if self.peek().kind in ("op", "ident") and self.peek().text == text:
            self.at += 1
            return True
        return False

    def expect(self, text: str, what: str) -> Token:
        if not self.accept(text):
            self.fail(f"expected {what}")
        return self.tokens[self.at - 1]

    def fail(self, reason: str, token: Token | None = None):
        token = token or self.peek()
        shown = "end of expression" if token.kind == "end" else f'"{token.text}"'
        raise PromQLError(f"unexpected {shown}", token.position, reason)

    # -- grammar

    def parse(self):
        if self.peek().kind == "end":
            raise PromQLError("empty expression", 0)
        node = self.binary(0)
        if self.peek().kind != "end":
            self.fail("expected an operator or the end of the expression")
        if kind(node) == MATRIX:
            raise PromQLError("the expression gives a range vector; use it in a function such as rate()", 0)
        return node

    def binary(self, level: int):
        if level == len(LEVELS):
            return self.unary()
        lhs = self.binary(level + 1)
        while self.peek().kind in ("op", "ident") and self.peek().text in LEVELS[level]:
            token = self.take()
            bool_, on, matching = self.modifiers(token.text)
            rhs = self.binary(level if token.text == "^" else level + 1)  # ^ is right-associative
            lhs = self.combine(token, lhs, rhs, bool_, on, matching)
        return lhs

    def modifiers(self, op: str) -> tuple[bool, bool, tuple[str, ...]]:
        bool_ = self.accept("bool")
        if bool_ and op not in COMPARISONS:
            self.fail("`bool` only goes after a comparison", self.tokens[self.at - 1])
        on, matching = False, ()
        if self.peek().text in ("on", "ignoring") and self.peek(1).text == "(":
            on = self.take().text == "on"
            matching = self.label_list()
        if self.peek().text in ("group_left", "group_right"):
            self.fail("many-to-one matching (group_left/group_right) is not supported")
        return bool_, on, matching

    def combine(self, token: Token, lhs, rhs, bool_: bool, on: bool, matching: tuple[str, ...]):
        op = token.text
        kinds = (kind(lhs), kind(rhs))
        if MATRIX in kinds:
            raise PromQLError(f'a range vector cannot be an operand of "{op}";'
                              " use it in a function such as rate()", token.position)
        if op == "atan2":
            raise PromQLError('"atan2" is not supported', token.position)
        if op in SET_OPERATORS and SCALAR in kinds:
            raise PromQLError(f'"{op}" needs an instant vector on both sides', token.position)
        if op in COMPARISONS and kinds == (SCALAR, SCALAR) and not bool_:
            raise PromQLError("a comparison between two scalars needs `bool`", token.position)
        if matching and SCALAR in kinds:
            raise PromQLError("on/ignoring only goes between two instant vectors", token.position)
        return Binary(op, lhs, rhs, bool_, on, matching)

    def unary(self):
        token = self.peek()
        if token.kind == "op" and token.text in "+-":
            self.take()
            operand = self.unary()
            if kind(operand) == MATRIX:
                raise PromQLError("a range vector cannot be negated", token.position)
            if token.text == "+":
                return operand
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value)
            return Negation(operand)
        return self.postfix(self.primary())

    def postfix(self, node):
        token = self.peek()
        if token.text == "[" and token.kind == "op":
            if not isinstance(node, VectorSelector):
                self.fail("a range [..] only goes after a metric selector")
            self.take()
            duration = self.peek()
            if duration.kind != "duration":
                self.fail("expected a duration such as 5m")
            self.take()
            if self.peek().text.startswith(":"):
                self.fail("subqueries are not supported")
            self.expect("]", '"]"')
            seconds = seconds_of(duration.text)
            if seconds <= 0:
                raise PromQLError("the range must be more than zero", duration.position)
            key = f"{_selector_text(node)}[{duration.text}]"
            node = MatrixSelector(node, seconds, key)
        if self.peek().text in ("offset", "@"):
            self.fail("`offset` and `@` are not supported")
        return node

    def primary(self):
        token = self.peek()
        if token.kind == "number":
            self.take()
            return NumberLiteral(float(int(token.text, 16)) if token.text[:2].lower() == "0x" else float(token.text))
        if token.kind == "ident" and token.text.lower() in ("inf", "nan") and self.peek(1).text != "{":
            self.take()
            return NumberLiteral(float(token.text))
        if token.kind == "string":
            self.fail("a string is not an expression here")
        if token.text == "(" and token.kind == "op":
            self.take()
            node = self.binary(0)
            self.expect(")", '")"')
            return node
        if token.text == "{" and token.kind == "op":
            return self.selector("", token)
        if token.kind == "ident":
            if token.text in AGGREGATIONS and self.peek(1).text in ("(", "by", "without"):
                return self.aggregation()
            if token.text in UNSUPPORTED_AGGREGATIONS and self.peek(1).text in ("(", "by", "without"):
                raise PromQLError(f'the aggregation "{token.text}" is not supported', token.position)
            if self.peek(1).text == "(":
                return self.call()
            self.take()
            return self.selector(token.text, token)
        self.fail("expected a metric, a number, a function or \"(\"")

    def selector(self, name: str, start: Token) -> VectorSelector:
        matchers = []
        if self.accept("{"):
            while not self.accept("}"):
                matchers.append(self.matcher())
                if not self.accept(","):
                    self.expect("}", '"," or "}"')
                    break
        if name:
            matchers = [Matcher(NAME, "=", name), *matchers]
        if not any(not m.matches("") for m in matchers):
            raise PromQLError("a selector needs a metric name or a matcher that does not match the empty"
                              " string", start.position)
        names = [m for m in matchers if m.label == NAME]
        shown = name or next((m.value for m in names if m.op == "="), "")
        return VectorSelector(shown, tuple(matchers))

    def matcher(self) -> Matcher:
        label = self.take()
        if label.kind != "ident" or ":" in label.text:
            self.fail("expected a label name", label)
        op = self.take()
        if op.text not in ("=", "!=", "=~", "!~"):
            self.fail('expected one of "=", "!=", "=~", "!~"', op)
        value = self.take()
        if value.kind != "string":
            self.fail("expected a quoted label value", value)
        text = _unquote(value)
        if op.text in ("=~", "!~"):
            try:
                anchored(text)
            except re.error as exc:
                raise PromQLError(f"bad regular expression {text!r}: {exc}", value.position) from None
        return Matcher(label.text, op.text, text)

    def label_list(self) -> tuple[str, ...]:
        self.expect("(", '"("')
        labels = []
        while not self.accept(")"):
            label = self.take()
            if label.kind != "ident" or ":" in label.text:
                self.fail("expected a label name", label)
            labels.append(label.text)
            if not self.accept(","):
                self.expect(")", '"," or ")"')
                break
        return tuple(labels)

    def aggregation(self) -> Aggregation:
        op = self.take().text
        grouping, without, grouped = (), False, False
        if self.peek().text in ("by", "without"):
            without, grouping, grouped = self.take().text == "without", self.label_list(), True
        self.expect("(", '"("')
        if self.peek().text == ")":
            self.fail(f"{op}() needs an expression")
        expr = self.binary(0)
        if self.peek().text == ",":
            self.fail(f"{op}() takes one expression")
        self.expect(")", '")"')
        if not grouped and self.peek().text in ("by", "without"):
            without, grouping = self.take().text == "without", self.label_list()
        if kind(expr) != VECTOR:
            raise PromQLError(f"{op}() needs an instant vector, not {_a(kind(expr))}", self.peek().position)
        return Aggregation(op, expr, grouping, without)

    def call(self) -> Call:
        name = self.take()
        if name.text not in FUNCTIONS:
            raise PromQLError(f'unknown or unsupported function "{name.text}"', name.position)
        self.expect("(", '"("')
        args = []
        while not self.accept(")"):
            args.append((self.peek(), self.binary(0)))
            if not self.accept(","):
                self.expect(")", '"," or ")"')
                break
        wanted = FUNCTIONS[name.text][0]
        if len(args) != len(wanted):
            raise PromQLError(f"{name.text}() takes {len(wanted)} argument(s), got {len(args)}", name.position)
        for (start, arg), expected in zip(args, wanted):
            if kind(arg) != expected:
                raise PromQLError(f"{name.text}() needs {_a(expected)}, not {_a(kind(arg))}", start.position,
                                  "add a range such as [5m]" if expected == MATRIX else "")
        return Call(name.text, tuple(arg for _, arg in args))


def _a(kind_: str) -> str:
    return f"an {kind_}" if kind_[0] in "aeiou" else f"a {kind_}"


def _selector_text(selector: VectorSelector) -> str:
    shown = [m for m in selector.matchers if not (m.label == NAME and m.op == "=" and m.value == selector.name)]
    inner = ",".join(f'{m.label}{m.op}"{m.value}"' for m in shown)
    return f"{selector.name}{{{inner}}}"


def parse(text: str):
    """The syntax tree of `text`; raises PromQLError with the reason and where in the text."""
    return Parser(text).parse()


# ---------------------------------------------------------------- samples and history


class Samples:
    """The current samples by metric name, read from exposition families; a lazy group is built when first read."""

    def __init__(self, families: Iterable[Family] = (),
                 lazy: Iterable[tuple[frozenset[str], Callable[[], list[Family]]]] = ()):
        self.families = {family.name: family for family in families}
        self._lazy = list(lazy)  # (the names a group has, its builder): most rules read one group or two

    def _named(self, matchers: list[Matcher]) -> list[Family]:
        for group in list(self._lazy):
            if any(all(m.matches(name) for m in matchers) for name in group[0]):
                self._lazy.remove(group)
                self.families.update((family.name, family) for family in group[1]())
        return [family for name, family in self.families.items() if all(m.matches(name) for m in matchers)]

    def select(self, selector: VectorSelector) -> Vector:
        found: Vector = {}
        others = [m for m in selector.matchers if m.label != NAME]
        for family in self._named([m for m in selector.matchers if m.label == NAME]):
            labels_of, wanted = _labeller(family), _row_filter(family, others)
            for row in family.rows:
                if wanted(row):
                    found[labels_of(row)] = float(row[-1])
        return found


def _row_filter(family: Family, matchers: list[Matcher]) -> Callable[[tuple], bool]:
    """Whether a row's labels match: equality on one label (the common case) compared directly."""
    index = {label: i for i, label in enumerate(family.label_names)}
    checks = [(index.get(m.label), m) for m in matchers]
    if not checks:
        return lambda row: True
    if len(checks) == 1 and checks[0][0] is not None and checks[0][1].op == "=":
        (i, matcher), = checks
        return lambda row: row[i] == matcher.value
    return lambda row: all(m.matches(row[i] if i is not None else "") for i, m in checks)


def _labeller(family: Family) -> Callable[[tuple], Labels]:
    """A row's Labels, sorted by name; the order is worked out once per family, not once per row."""
    order = sorted(range(len(family.label_names)), key=lambda i: family.label_names[i])
    names = tuple(family.label_names[i] for i in order)
    if names and names[0] < NAME:  # a label sorting before __name__ (uppercase): the general way
        return lambda row: tuple(sorted([(NAME, family.name), *zip(family.label_names, row)]))
    first = (NAME, family.name)
    if not order:
        return lambda row: (first,)
    if len(order) == 1:
        return lambda row: (first, (names[0], row[order[0]]))
    values = itemgetter(*order)
    return lambda row: (first, *zip(names, values(row)))


class History:
    """Samples of the series range selectors read, one ring a series, kept only within the selector's range."""

    def __init__(self) -> None:
        self._stores: dict[str, dict[Labels, array]] = {}  # selector key -> series -> [t0, v0, t1, v1, ...]

    def window(self, matrix: MatrixSelector, current: Vector, now: float) -> dict[Labels, array]:
        """Record `current` at `now`, then the samples within (now - range, now] of every series."""
        store = self._stores.setdefault(matrix.key, {})
        for labels, value in current.items():
            samples = store.get(labels)
            if samples is None:
                samples = store[labels] = array("d")
            if not samples or samples[-2] < now:  # several rules reading one selector record it once
                samples.extend((now, value))
                if len(samples) > 2 * MAX_SAMPLES:
                    del samples[:2]
        cutoff = now - matrix.range
        for labels in list(store):
            samples = store[labels]
            first = 0
            while first < len(samples) and samples[first] <= cutoff:
                first += 2
            if first:
                del samples[:first]
            if not samples:
                del store[labels]
        return {labels: samples for labels, samples in store.items() if samples[0] <= now}

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget the selectors no rule reads any more."""
        wanted = set(keys)
        for key in list(self._stores):
            if key not in wanted:
                del self._stores[key]

    def series(self) -> int:
        return sum(len(store) for store in self._stores.values())

    def samples(self) -> int:
        return sum(len(samples) // 2 for store in self._stores.values() for samples in store.values())


# ---------------------------------------------------------------- evaluation


@dataclass
class Context:
    samples: Samples
    history: History
    now: float  # seconds since the epoch


def evaluate(node, context: Context) -> float | Vector:
    """The value of `node` at `context.now`: a scalar or an instant vector."""
    if isinstance(node, NumberLiteral):
        return node.value
    if isinstance(node, VectorSelector):
        return context.samples.select(node)
    if isinstance(node, Negation):
        value = evaluate(node.expr, context)
        return -value if isinstance(value, float) else {_drop_name(k): -v for k, v in value.items()}
    if isinstance(node, Aggregation):
        return aggregate(node, evaluate(node.expr, context))
    if isinstance(node, Binary):
        return binary(node, evaluate(node.lhs, context), evaluate(node.rhs, context))
    if isinstance(node, Call):
        return FUNCTIONS[node.function][2](node, context)
    raise EvaluationError(f"cannot evaluate {node!r}")


def _drop_name(labels: Labels) -> Labels:
    return tuple(pair for pair in labels if pair[0] != NAME)


def _keep(labels: Labels, names: Iterable[str]) -> Labels:
    wanted = set(names)
    return tuple(pair for pair in labels if pair[0] in wanted)


def _without(labels: Labels, names: Iterable[str]) -> Labels:
    unwanted = {*names, NAME}
    return tuple(pair for pair in labels if pair[0] not in unwanted)


def aggregate(node: Aggregation, vector: Vector) -> Vector:
    groups: dict[Labels, list[float]] = {}
    for labels, value in vector.items():
        key = _without(labels, node.grouping) if node.without else _keep(labels, node.grouping)
        groups.setdefault(key, []).append(value)
    return {key: AGGREGATORS[node.op](values) for key, values in groups.items()}


def _min(values: list[float]) -> float:
    real = [v for v in values if not math.isnan(v)]
    return min(real) if real else math.nan


def _max(values: list[float]) -> float:
    real = [v for v in values if not math.isnan(v)]
    return max(real) if real else math.nan


AGGREGATORS: dict[str, Callable[[list[float]], float]] = {
    "sum": lambda values: math.fsum(values), "min": _min, "max": _max,
    "avg": lambda values: math.fsum(values) / len(values), "count": lambda values: float(len(values)),
    "group": lambda values: 1.0,
}


def _arithmetic(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b if b else (math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * (
                math.copysign(1, b)))
        if op == "%":
            return math.fmod(a, b) if b else math.nan
        if a == 0 and b < 0:  # Go's math.Pow, as Prometheus: +Inf (or -Inf for -0 to an odd power)
            return math.copysign(math.inf, a) if b % 2 == 1 else math.inf
        return math.pow(a, b)
    except OverflowError:  # 10 ^ 400
        return math.inf if a >= 0 or b % 2 == 0 else -math.inf
    except ValueError:  # a negative number to a fractional power
        return math.nan


_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def binary(node: Binary, lhs: float | Vector, rhs: float | Vector) -> float | Vector:
    op = node.op
    if isinstance(lhs, float) and isinstance(rhs, float):
        return float(_COMPARE[op](lhs, rhs)) if op in COMPARISONS else _arithmetic(op, lhs, rhs)
    if op in SET_OPERATORS:
        return _set_operation(node, lhs, rhs)
    if isinstance(lhs, float) or isinstance(rhs, float):
        return _with_scalar(node, lhs, rhs)
    return _one_to_one(node, lhs, rhs)


def _pair(node: Binary, a: float, b: float, kept: float) -> float | None:
    """The result of one pair of operands; None when a comparison filters it out. `kept`: a filter's value."""
    if node.op not in COMPARISONS:
        return _arithmetic(node.op, a, b)
    holds = _COMPARE[node.op](a, b)
    if node.bool_:
        return float(holds)
    return kept if holds else None


def _with_scalar(node: Binary, lhs: float | Vector, rhs: float | Vector) -> Vector:
    vector_left = not isinstance(lhs, float)
    vector = lhs if vector_left else rhs
    scalar = rhs if vector_left else lhs
    keep_name = node.op in COMPARISONS and not node.bool_
    result = {}
    for labels, value in vector.items():
        a, b = (value, scalar) if vector_left else (scalar, value)
        out = _pair(node, a, b, value)
        if out is not None:
            result[labels if keep_name else _drop_name(labels)] = out
    return result


def _signature(node: Binary, labels: Labels) -> Labels:
    return _keep(labels, node.matching) if node.on else _without(labels, node.matching)


def _one_to_one(node: Binary, lhs: Vector, rhs: Vector) -> Vector:
    right: dict[Labels, float] = {}
    for labels, value in rhs.items():
        signature = _signature(node, labels)
        if signature in right:
            raise EvaluationError(f'many-to-many matching for "{node.op}": several series on the right have'
                                  f" the labels {dict(signature)}")
        right[signature] = value
    keep_name = node.op in COMPARISONS and not node.bool_
    result: Vector = {}
    for labels, value in lhs.items():
        signature = _signature(node, labels)
        if signature not in right:
            continue
        out = _pair(node, value, right[signature], value)
        if out is None:
            continue
        # Prometheus' resultMetric: `on` keeps only its labels, `ignoring` drops its own.
        dropped = set(node.matching)
        metric = _keep(labels, node.matching) if node.on else tuple(p for p in labels if p[0] not in dropped)
        if not keep_name:
            metric = _drop_name(metric)
        if metric in result:
            raise EvaluationError(f'many-to-many matching for "{node.op}": several series on the left have'
                                  f" the labels {dict(signature)}")
        result[metric] = out
    return result


def _set_operation(node: Binary, lhs: Vector, rhs: Vector) -> Vector:
    right = {_signature(node, labels) for labels in rhs}
    if node.op == "and":
        return {labels: v for labels, v in lhs.items() if _signature(node, labels) in right}
    if node.op == "unless":
        return {labels: v for labels, v in lhs.items() if _signature(node, labels) not in right}
    left = {_signature(node, labels) for labels in lhs}
    return {**lhs, **{labels: v for labels, v in rhs.items() if _signature(node, labels) not in left}}


# ---------------------------------------------------------------- functions


def _windows(node: Call, context: Context) -> dict[Labels, array]:
    matrix = node.args[0]
    return context.history.window(matrix, context.samples.select(matrix.vector), context.now)


def _over_window(reduce: Callable[[array, float], float | None]):
    """A range function: `reduce(samples, range)` per series, the metric name dropped."""
    def function(node: Call, context: Context) -> Vector:
        result = {}
        for labels, samples in _windows(node, context).items():
            value = reduce(samples, node.args[0].range, context.now)
            if value is not None:
                result[_drop_name(labels)] = value
        return result
    return function


def _values(samples: array) -> array:
    return samples[1::2]


def extrapolated(samples: array, range_: float, now: float, counter: bool, per_second: bool) -> float | None:
    """Prometheus' extrapolatedRate: the change over the window, counter resets added back for counters."""
    if len(samples) < 4:
        return None
    values = _values(samples)
    first_t, last_t = samples[0], samples[-2]
    change = values[-1] - values[0]
    if counter:
        change += sum(before for before, after in zip(values, values[1:]) if after < before)
    start, end = now - range_, now
    sampled = last_t - first_t
    average = sampled / (len(values) - 1)
    to_start, to_end = first_t - start, end - last_t
    if counter and change > 0 and values[0] >= 0:
        to_start = min(to_start, sampled * (values[0] / change))  # a counter is never below zero
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2) \
        + (to_end if to_end < threshold else average / 2)
    change *= interval / sampled
    return change / range_ if per_second else change


def _irate(samples: array, range_: float, now: float) -> float | None:
    if len(samples) < 4:
        return None
    (t0, v0), (t1, v1) = samples[-4:-2], samples[-2:]
    change = v1 if v1 < v0 else v1 - v0  # a reset: the counter restarted from zero
    return change / (t1 - t0)


def _changes(samples: array, range_: float, now: float) -> float:
    values = _values(samples)
    return float(sum(1 for a, b in zip(values, values[1:]) if a != b and not (math.isnan(a) and math.isnan(b))))


def _resets(samples: array, range_: float, now: float) -> float:
    values = _values(samples)
    return float(sum(1 for a, b in zip(values, values[1:]) if b < a))


def _absent(node: Call, context: Context) -> Vector:
    if evaluate(node.args[0], context):
        return {}
    arg = node.args[0]
    labels: dict[str, str] = {}
    if isinstance(arg, VectorSelector):
        equal = [m for m in arg.matchers if m.op == "=" and m.label != NAME]
        for m in equal:
            labels[m.label] = m.value
        for label in {m.label for m in equal if sum(1 for o in equal if o.label == m.label) > 1}:
            del labels[label]  # two different values for one label: Prometheus leaves it out
    return {tuple(sorted(labels.items())): 1.0}


def _each(apply: Callable[[float], float]):
    def function(node: Call, context: Context) -> Vector:
        return {_drop_name(labels): apply(v) for labels, v in evaluate(node.args[0], context).items()}
    return function


def _ceil(value: float) -> float:
    return float(math.ceil(value)) if math.isfinite(value) else value


def _floor(value: float) -> float:
    return float(math.floor(value)) if math.isfinite(value) else value


RANGE_FUNCTIONS: dict[str, Callable] = {
    "rate": lambda s, r, now: extrapolated(s, r, now, counter=True, per_second=True),
    "increase": lambda s, r, now: extrapolated(s, r, now, counter=True, per_second=False),
    "delta": lambda s, r, now: extrapolated(s, r, now, counter=False, per_second=False),
    "irate": _irate,
    "changes": _changes,
    "resets": _resets,
    "max_over_time": lambda s, r, now: _max(list(_values(s))),
    "min_over_time": lambda s, r, now: _min(list(_values(s))),
    "avg_over_time": lambda s, r, now: math.fsum(_values(s)) / (len(s) // 2),
    "sum_over_time": lambda s, r, now: math.fsum(_values(s)),
    "count_over_time": lambda s, r, now: float(len(s) // 2),
    "last_over_time": lambda s, r, now: s[-1],
}

# name -> (argument kinds, result kind, implementation)
FUNCTIONS: dict[str, tuple[tuple[str, ...], str, Callable]] = {
    **{name: ((MATRIX,), VECTOR, _over_window(reduce)) for name, reduce in RANGE_FUNCTIONS.items()},
    "absent": ((VECTOR,), VECTOR, _absent),
    "abs": ((VECTOR,), VECTOR, _each(abs)),
    "ceil": ((VECTOR,), VECTOR, _each(_ceil)),
    "floor": ((VECTOR,), VECTOR, _each(_floor)),
    "time": ((), SCALAR, lambda node, context: float(context.now)),
    "vector": ((SCALAR,), VECTOR, lambda node, context: {(): float(evaluate(node.args[0], context))}),
}
