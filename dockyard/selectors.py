"""Kubernetes label selectors: parse `app=web,tier!=db,env in (a,b),!legacy`, match, and query."""

from __future__ import annotations

import re

import msgspec


class SelectorError(ValueError):
    pass


class Requirement(msgspec.Struct, frozen=True):
    key: str
    operator: str  # = != in notin exists !exists
    values: tuple[str, ...] = ()


_SET = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY = re.compile(r"^\s*([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def parse_selector(selector: str) -> tuple[Requirement, ...]:
    requirements = []
    for term in _split_terms(selector or ""):
        if match := _SET.match(term):
            values = tuple(sorted(v.strip() for v in match.group(3).split(",") if v.strip()))
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQUALITY.match(term):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), operator, (match.group(3),)))
        elif match := _EXISTS.match(term):
            requirements.append(Requirement(match.group(2), "!exists" if match.group(1) else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return tuple(requirements)


def _satisfied(labels: dict[str, str], req: Requirement) -> bool:
    if req.operator in ("exists", "!exists"):
        return (req.key in labels) == (req.operator == "exists")
    if req.key not in labels:
        return req.operator in ("!=", "notin")
    value = labels[req.key]
    if req.operator == "=":
        return value == req.values[0]
    if req.operator == "!=":
        return value != req.values[0]
    return (value in req.values) == (req.operator == "in")


def matches(labels: dict[str, str], requirements: tuple[Requirement, ...]) -> bool:
    return all(_satisfied(labels, req) for req in requirements)


def to_sql(requirements: tuple[Requirement, ...], column: str = "labels") -> tuple[str, dict[str, object]]:
    """A WHERE fragment over a JSONB labels column, and its bind parameters."""
    clauses, params = [], {}
    for i, req in enumerate(requirements):
        key, vals = f"sel_k{i}", f"sel_v{i}"
        params[key] = req.key
        if req.operator == "=":
            clauses.append(f"{column} ->> :{key} = :{vals}")
            params[vals] = req.values[0]
        elif req.operator == "!=":
            clauses.append(f"({column} ->> :{key}) IS DISTINCT FROM :{vals}")
            params[vals] = req.values[0]
        elif req.operator == "in":
            clauses.append(f"{column} ->> :{key} = ANY(:{vals})")
            params[vals] = list(req.values)
        elif req.operator == "notin":
            clauses.append(f"NOT coalesce({column} ->> :{key} = ANY(:{vals}), false)")
            params[vals] = list(req.values)
        elif req.operator == "exists":
            clauses.append(f"{column} ? :{key}")
        else:
            clauses.append(f"NOT ({column} ? :{key})")
    return " AND ".join(clauses) or "TRUE", params
