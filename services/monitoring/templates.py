"""Alert label and annotation templates: the subset of Prometheus' Go templates, checked when a rule loads.

Supported: text with `{{ ... }}` actions (and the `{{-`/`-}}` trims, `{{/* comments */}}`); in an action,
`$labels`, `$labels.NAME`, `$value` (or `.Labels`, `.Labels.NAME`, `.Value`), quoted strings and numbers;
functions `humanize`, `humanize1024`, `humanizePercentage`, `humanizeDuration`, `printf`, `toUpper`,
`toLower`, `title`, called as `humanize $value` or piped as `$value | humanize`. Anything else (`if`,
`range`, `.Foo`, an unknown function, an unclosed action) is refused when the rule file loads.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class TemplateError(ValueError):
    """A template that cannot be used: the reason, and the offset in the template it is about."""

    def __init__(self, reason: str, position: int):
        super().__init__(f"{reason} at column {position + 1}")
        self.reason = reason
        self.position = position


@dataclass(frozen=True)
class Operand:
    kind: str  # labels, label, value, string, number
    text: str  # the label's name, the string, the number


@dataclass(frozen=True)
class Command:
    function: str  # "" for a lone operand
    args: tuple[Operand, ...]


Action = tuple[Command, ...]  # a pipeline: each command's result is the last argument of the next
Template = tuple  # of str and Action

_ACTION_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<pipe>\|)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<variable>\$[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|\$)
  | (?P<field>\.[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|\.)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_]\w*)
""", re.VERBOSE)
CONTROL = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
UNSUPPORTED_VARIABLES = {"$externalLabels", "$externalURL"}


def parse_template(text: str) -> Template:
    """The parts of `text`: plain text and actions; raises TemplateError with the reason and column."""
    parts: list = []
    position = 0
    trim_next = False
    while True:
        start = text.find("{{", position)
        plain = text[position:] if start < 0 else text[position:start]
        if trim_next:
            plain = plain.lstrip()
        if start < 0:
            parts.append(plain)
            break
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateError(f"unclosed action {text[start:start + 20]!r}", start)
        inner, inner_start = text[start + 2:end], start + 2
        if re.match(r"-\s", inner):
            plain = plain.rstrip()
            inner, inner_start = inner[1:], inner_start + 1
        trim_next = bool(re.search(r"\s-$", inner))
        if trim_next:
            inner = inner[:-1]
        parts.append(plain)
        if not inner.strip().startswith("/*"):
            parts.append(_action(inner, inner_start))
        elif not inner.strip().endswith("*/"):
            raise TemplateError("unclosed comment", start)
        position = end + 2
    return tuple(part for part in parts if part != "")


def _action(text: str, offset: int) -> Action:
    commands: list[list[tuple[str, str, int]]] = [[]]
    position = 0
    while position < len(text):
        match = _ACTION_TOKEN.match(text, position)
        if match is None:
            raise TemplateError(f"unexpected {text[position]!r} in action", offset + position)
        if match.lastgroup == "pipe":
            commands.append([])
        elif match.lastgroup != "space":
            commands[-1].append((match.lastgroup, match.group(), offset + position))
        position = match.end()
    if not any(commands):
        raise TemplateError("empty action", offset)
    return tuple(_command(words, index > 0, offset) for index, words in enumerate(commands))


def _command(words: list[tuple[str, str, int]], piped: bool, offset: int) -> Command:
    if not words:
        raise TemplateError("missing command around \"|\"", offset)
    kind, text, position = words[0]
    if kind == "ident":
        if text in CONTROL:
            raise TemplateError(f"{{{{ {text} }}}} is not supported (only values and functions)", position)
        if text not in FUNCTIONS:
            raise TemplateError(f'function "{text}" not defined; known: {", ".join(sorted(FUNCTIONS))}', position)
        args = tuple(_operand(*word) for word in words[1:])
        low, high = FUNCTIONS[text][1]
        count = len(args) + (1 if piped else 0)
        if not low <= count <= high:
            raise TemplateError(f"{text} takes {low if low == high else f'{low} or more'} argument(s), got {count}",
                                position)
        return Command(text, args)
    if piped:
        raise TemplateError(f"{text!r} is not a function, it cannot follow \"|\"", position)
    if len(words) > 1:
        raise TemplateError(f"{text!r} is not a function, it cannot take arguments", words[1][2])
    return Command("", (_operand(kind, text, position),))


def _operand(kind: str, text: str, position: int) -> Operand:
    if kind == "string":
        try:
            return Operand("string", text[1:-1] if text[0] == "`" else json.loads(text))
        except ValueError:
            raise TemplateError(f"bad escape in the string {text}", position) from None
    if kind == "number":
        return Operand("number", text)
    if kind in ("variable", "field"):
        path = text.split(".")
        root = {"$labels": "labels", "$value": "value", ".Labels": "labels", ".Value": "value"}.get(
            path[0] if kind == "variable" else "." + path[1] if len(path) > 1 else ".")
        rest = path[1:] if kind == "variable" else path[2:]
        if root == "labels" and len(rest) <= 1:
            return Operand("label", rest[0]) if rest else Operand("labels", "")
        if root == "value" and not rest:
            return Operand("value", "")
        if path[0] in UNSUPPORTED_VARIABLES:
            raise TemplateError(f"{path[0]} is not supported", position)
        if kind == "variable":
            raise TemplateError(f"undefined variable {text}; use $labels.NAME or $value", position)
        raise TemplateError(f"unknown field {text}; use $labels.NAME or $value", position)
    raise TemplateError(f"{text!r} is a function: call it with its argument, e.g. {{{{ {text} $value }}}}", position)


# ---------------------------------------------------------------- rendering


def render(template: Template, labels: Mapping[str, str], value: float) -> str:
    """The template's text for one alert; a failing action shows as Prometheus shows it."""
    out = []
    for part in template:
        if isinstance(part, str):
            out.append(part)
            continue
        try:
            out.append(_shown(_run(part, labels, value)))
        except (ValueError, TypeError, OverflowError) as exc:
            out.append(f"<error expanding template: {exc}>")
    return "".join(out)


def expand(text: str, labels: Mapping[str, str], value: float) -> str:
    """Render a template's text; one that does not parse (not checked at load) is shown as it is."""
    try:
        return render(_parsed(text), labels, value)
    except TemplateError:
        return text


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Template:
    """A rule's few templates render once per alert and evaluation: parsed once."""
    return parse_template(text)


def _run(action: Action, labels: Mapping[str, str], value: float) -> object:
    result: object = None
    for index, command in enumerate(action):
        args = [_resolve(arg, labels, value) for arg in command.args]
        if not command.function:
            result = args[0]
            continue
        if index > 0:
            args.append(result)
        result = FUNCTIONS[command.function][0](*args)
    return result


def _resolve(operand: Operand, labels: Mapping[str, str], value: float) -> object:
    if operand.kind == "labels":
        return dict(labels)
    if operand.kind == "label":
        return labels.get(operand.text, "")
    if operand.kind == "value":
        return value
    if operand.kind == "number":
        return float(operand.text) if any(c in operand.text for c in ".eE") else int(operand.text)
    return operand.text


def _shown(result: object) -> str:
    if isinstance(result, float):
        return f"{result:g}"
    if isinstance(result, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(result.items()))
    return str(result)


def _number(value: object) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(f"{_shown(value)!r} is not a number")


def _go_g(value: float) -> str:
    return "%.4g" % value


def humanize(value: object) -> str:
    """Prometheus' humanize: 4 significant digits and an SI prefix, 1234567 -> 1.235M."""
    return _prefixed(_number(value), 1000.0)


def humanize1024(value: object) -> str:
    return _prefixed(_number(value), 1024.0, small=False, prefixes=("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"))


def _prefixed(v: float, base: float, small: bool = True,
              prefixes: tuple[str, ...] = ("k", "M", "G", "T", "P", "E", "Z", "Y")) -> str:
    if v == 0 or not math.isfinite(v):
        return _go_g(v)
    prefix = ""
    if abs(v) >= 1 or not small:
        for p in prefixes:
            if abs(v) < base:
                break
            prefix, v = p, v / base
        return f"{_go_g(v)}{prefix}"
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_go_g(v)}{prefix}"


def humanize_percentage(value: object) -> str:
    return f"{_go_g(_number(value) * 100)}%"


def humanize_duration(value: object) -> str:
    """Prometheus' humanizeDuration: seconds as `1d 2h 3m 4s`, or `1.5s`, `250ms` under a minute."""
    v = _number(value)
    if not math.isfinite(v):
        return _go_g(v)
    if v == 0:
        return f"{_go_g(v)}s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        whole = int(v)
        days, hours, minutes, seconds = whole // 86400, whole // 3600 % 24, whole // 60 % 60, whole % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_go_g(v)}s"
    return f"{_prefixed(v, 1000.0)}s"


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")
# Go pads to any width; a rule file (or a label value used as the format) must not make the service
# build a string of gigabytes every round.
MAX_WIDTH = 1000


def printf(template: object, *args: object) -> str:
    """Go's fmt.Sprintf for the verbs templates use: %s %v %d %f %e %g %x %q %%."""
    if not isinstance(template, str):
        raise ValueError("printf's first argument must be a string")
    remaining = list(args)

    def one(match: re.Match) -> str:
        flags, width, precision, verb = match.groups()
        if verb == "%":
            return "%"
        if not remaining:
            return f"%!{verb}(MISSING)"
        arg = remaining.pop(0)
        if int(width or 0) > MAX_WIDTH or int(precision or 0) > MAX_WIDTH:
            raise ValueError(f"printf: width and precision are at most {MAX_WIDTH}")
        spec = f"%{flags}{width or ''}{'.' + precision if precision is not None else ''}"
        if verb in "sv":
            return (spec + "s") % _shown(arg)
        if verb == "q":
            return (spec + "s") % json.dumps(_shown(arg))
        if verb in "dxXo":
            return (spec + verb) % int(_number(arg))
        if verb in "feEgG":
            return (spec + verb) % _number(arg)
        return f"%!{verb}({_shown(arg)})"

    return _VERB.sub(one, template)


FUNCTIONS: dict[str, tuple[Callable[..., str], tuple[int, int]]] = {
    "humanize": (humanize, (1, 1)),
    "humanize1024": (humanize1024, (1, 1)),
    "humanizePercentage": (humanize_percentage, (1, 1)),
    "humanizeDuration": (humanize_duration, (1, 1)),
    "printf": (printf, (1, 99)),
    "toUpper": (lambda s: str(s).upper(), (1, 1)),
    "toLower": (lambda s: str(s).lower(), (1, 1)),
    "title": (lambda s: str(s).title(), (1, 1)),
}
