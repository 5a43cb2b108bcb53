"""Reading manifests: YAML or JSON bytes into documents, then strict validation into Deployment, Pod and Node."""

import json
import math
import re
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple, get_args, get_origin

import msgspec
import yaml

from dockyard.schemas.manifests import (
    API_VERSION,
    HTTP_SCHEMES,
    IMAGE_PULL_POLICIES,
    KINDS,
    PROTOCOLS,
    RESOURCE_NAMES,
    RESTART_POLICIES,
    STRATEGY_TYPES,
    TAINT_EFFECTS,
    TOLERATION_OPERATORS,
    Container,
    ContainerPort,
    Deployment,
    DeploymentSpec,
    DeploymentStrategy,
    Node,
    NodeSpec,
    ObjectMeta,
    Pod,
    PodSpec,
    Probe,
    Resource,
    ResourceRequirements,
    SecurityContext,
    Toleration,
    Volume,
    VolumeMount,
)
from dockyard.schemas.quantity import Quantity, parse_quantity

MIB = 1024 * 1024
MAX_DOCUMENT_BYTES = 1 * MIB  # etcd's value limit; NATS' default max payload too
MAX_NESTING = 100
# Counted with every alias expanded: refuses "billion laughs" before it is built.
MAX_EXPANDED_NODES = 1_000_000

# What each kind accepts as apiVersion; Kubernetes' own are taken as-is.
ACCEPTED_API_VERSIONS = {
    "Deployment": (API_VERSION, "apps/v1"),
    "Node": (API_VERSION, "v1"),
    "Pod": (API_VERSION, "v1"),
}
# Fields the server owns: present in manifests exported from a cluster, never taken from input.
SERVER_OWNED_METADATA = (
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

_DOCUMENT_START = re.compile(rb"^---(?=[ \t\r\n]|$)", re.MULTILINE)
_PREAMBLE_LINE = re.compile(rb"[ \t]*(#.*|%.*)?")
_UTF8_BOM = b"\xef\xbb\xbf"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ManifestError(Exception):
    """One or more problems in a manifest, each a line naming where it is."""

    def __init__(self, source: str, errors: Iterable[str]) -> None:
        self.source = source
        self.errors = tuple(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(prefix + error for error in self.errors)

    def __reduce__(self):
        return ManifestError, (self.source, self.errors)


# ---------------------------------------------------------------- documents


class _DocumentError(Exception):
    """A problem that makes one document unreadable."""


@dataclass(frozen=True)
class _Chunk:
    number: int
    offset: int
    first_line: int
    data: bytes

    @property
    def where(self) -> str:
        return f"document {self.number}"


def load_documents(data: bytes, source: str) -> list[dict]:
    """Every resource document in YAML or JSON bytes, List documents expanded."""
    return [document for _, document in load_located_documents(data, source)]


def load_manifests(data: bytes, source: str) -> list[Resource]:
    """Every resource in YAML or JSON bytes, validated; all problems of all documents in one error."""
    resources: list[Resource] = []
    errors: list[str] = []
    for where, document in load_located_documents(data, source):
        try:
            resources.append(validate(document, where=where))
        except ManifestError as error:
            errors.extend(error.errors)
    if errors:
        raise ManifestError(source, errors)
    return resources


def load_located_documents(data: bytes, source: str) -> list[tuple[str, dict]]:
    """Like load_documents, each with where it is: "document 3", or "document 3: items[1]" inside a List."""
    located: list[tuple[str, dict]] = []
    errors: list[str] = []
    for chunk in _split_documents(data):
        try:
            document = _parse_document(chunk)
        except _DocumentError as error:
            errors.append(str(error))
            continue
        if document is None:
            continue
        try:
            located.extend(_resource_documents(document, chunk.where))
        except _DocumentError as error:
            errors.append(str(error))
    if errors:
        raise ManifestError(source, errors)
    return located


def _split_documents(data: bytes) -> list[_Chunk]:
    # Splitting on "---" lines before parsing lets the size limit apply to each
    # document before the parser sees it; YAML forbids "---" at column 0 inside
    # a scalar, so a split there is always a document boundary.
    skip = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    starts = [match.start() for match in _DOCUMENT_START.finditer(data, skip)]
    if not starts or not _is_preamble(data[skip : starts[0]]):
        starts.insert(0, skip)
    else:
        starts[0] = skip  # comments and directives belong to the first document
    ends = starts[1:] + [len(data)]
    return [
        _Chunk(number, start, data.count(b"\n", 0, start) + 1, data[start:end])
        for number, (start, end) in enumerate(zip(starts, ends), start=1)
    ]


def _is_preamble(data: bytes) -> bool:
    return all(_PREAMBLE_LINE.fullmatch(line.rstrip(b"\r")) for line in data.split(b"\n"))


def _parse_document(chunk: _Chunk) -> Any:
    if len(chunk.data) > MAX_DOCUMENT_BYTES:
        raise _DocumentError(
            f"{chunk.where} is {_mebibytes(len(chunk.data))}; the limit is {_mebibytes(MAX_DOCUMENT_BYTES)}"
        )
    try:
        text = chunk.data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _DocumentError(f"{chunk.where}: not valid UTF-8 at byte {chunk.offset + error.start}") from None
    if text.lstrip().startswith(("{", "[")):
        try:
            return msgspec.json.decode(chunk.data)
        except (msgspec.DecodeError, RecursionError):
            pass  # flow-style YAML, or broken JSON: the YAML parser says where
    try:
        _check_yaml_shape(yaml.parse(text, Loader=_YAML_LOADER))
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.MarkedYAMLError as error:
        raise _DocumentError(f"{chunk.where}: {_yaml_problem(error, chunk.first_line)}") from None
    except (yaml.YAMLError, _DocumentError) as error:
        raise _DocumentError(f"{chunk.where}: {error}") from None


def _mebibytes(size: int) -> str:
    # Rounded up, so a document just over the limit never reads as equal to it.
    return f"{math.ceil(size * 10 / MIB) / 10:.1f} MiB"


def _check_yaml_shape(events: Iterable[yaml.Event]) -> None:
    """Refuse deep nesting and alias expansion bombs from the event stream, before composing."""
    anchored_sizes: dict[str, int] = {}
    open_collections: list[tuple[str | None, int]] = []
    expanded = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchored_sizes:
                raise _DocumentError(f"alias *{event.anchor} refers to an undefined or enclosing anchor")
            expanded += anchored_sizes[event.anchor]
        elif isinstance(event, yaml.NodeEvent):
            expanded += 1
            if isinstance(event, yaml.CollectionStartEvent):
                open_collections.append((event.anchor, expanded))
                if len(open_collections) > MAX_NESTING:
                    raise _DocumentError(f"nesting is deeper than {MAX_NESTING} levels")
            elif event.anchor is not None:
                anchored_sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, expanded_at_start = open_collections.pop()
            if anchor is not None:
                anchored_sizes[anchor] = expanded - expanded_at_start + 1
        if expanded > MAX_EXPANDED_NODES:
            raise _DocumentError(f"more than {MAX_EXPANDED_NODES} values once aliases are expanded")


def _yaml_problem(error: yaml.MarkedYAMLError, first_line: int) -> str:
    mark = error.problem_mark or error.context_mark
    problem = "; ".join(part for part in (error.context, error.problem) if part)
    if mark is None:
        return problem
    return f"line {first_line + mark.line}, column {mark.column + 1}: {problem}"


def _resource_documents(document: Any, where: str) -> Iterator[tuple[str, dict]]:
    if not isinstance(document, dict):
        raise _DocumentError(f"{where}: expected a mapping, got {_describe(document)}")
    if document.get("kind") != "List":
        yield where, document
        return
    items = document.get("items") or []
    if not isinstance(items, list):
        raise _DocumentError(f"{where}: items: expected a sequence, got {_describe(items)}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _DocumentError(f"{where}: items[{index}]: expected a mapping, got {_describe(item)}")
        yield f"{where}: items[{index}]", item


def _describe(value: Any) -> str:
    names = {dict: "a mapping", list: "a sequence", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- validation


def validate(raw: dict, *, source: str = "", where: str = "") -> Resource:
    """A manifest document as a strict Deployment, Pod or Node; every problem found in one ManifestError."""
    errors: list[str] = []
    resource = _validated(raw, errors)
    if errors or resource is None:
        raise ManifestError(source, [f"{where}: {error}" if where else error for error in errors])
    return resource


def to_kubernetes_dict(resource: Resource) -> dict:
    """A resource as plain data with Kubernetes' camelCase keys, as on the wire."""
    return msgspec.to_builtins(resource)


def _validated(raw: Any, errors: list[str]) -> Resource | None:
    if not isinstance(raw, dict):
        errors.append(f"expected a mapping, got {_describe(raw)}")
        return None
    kind = _kind_struct(raw, errors)
    if kind is None:
        return None
    found = list(_api_version_errors(raw))
    findings = _Findings()
    document = _conform(_without_server_fields(raw), kind, "", findings)
    found.extend(findings.messages())
    resource = _convert_or_none(document, kind)
    type_errors: list[str] = []
    if resource is None:
        # Value rules still run, over stand-ins for the parts of the wrong type,
        # so one pass over a manifest reports everything wrong with it.
        resource = _convert_or_none(_checked(document, kind, "", type_errors), kind)
    if resource is not None:
        resource = _placed_in_namespace(resource)
        found.extend(error for error in _resource_errors(resource) if not _is_under(error, type_errors))
    errors.extend(_in_document_order(found + type_errors, raw))
    return None if type_errors else resource


def _convert_or_none(document: Any, kind: type[Resource]) -> Resource | None:
    try:
        return msgspec.convert(document, kind, strict=True)
    except msgspec.ValidationError:
        return None  # the type walk says why (and after it, stand-ins refused: only type errors are given)


def _kind_struct(raw: dict, errors: list[str]) -> type[Resource] | None:
    kind = raw.get("kind")
    if kind is None:
        errors.append("kind: required field is missing")
    elif not isinstance(kind, str):
        errors.append(f"kind: expected str, got {type(kind).__name__}")
    elif kind not in KINDS:
        errors.append(f"kind: {_quoted(kind)} is not supported (supported: {', '.join(sorted(KINDS))})")
    else:
        return KINDS[kind]
    return None


def _api_version_errors(raw: dict) -> Iterator[str]:
    accepted = ACCEPTED_API_VERSIONS[raw["kind"]]
    api_version = raw.get("apiVersion")
    if api_version is None:
        yield "apiVersion: required field is missing"
    elif api_version not in accepted:
        yield (
            f"apiVersion: {_quoted(api_version)} is not supported for {raw['kind']}"
            f" (supported: {', '.join(accepted)})"
        )


def _without_server_fields(raw: dict) -> dict:
    # kubectl apply ignores status and server-owned metadata; so does Dockyard.
    # `kubectl create --dry-run -o yaml` also writes creationTimestamp: null into
    # the pod template, so the template's metadata is cleaned the same way.
    document = {key: value for key, value in raw.items() if key != "status"}
    document["apiVersion"] = API_VERSION
    if "metadata" in raw:
        document["metadata"] = _without_server_metadata(raw["metadata"])
    spec, template = raw.get("spec"), _get(raw, "spec", "template")
    if isinstance(template, dict) and "metadata" in template:
        template = {**template, "metadata": _without_server_metadata(template["metadata"])}
        document["spec"] = {**spec, "template": template}
    return document


def _without_server_metadata(metadata: Any) -> Any:
    if not isinstance(metadata, dict):
        return metadata  # malformed: msgspec reports it
    return {key: value for key, value in metadata.items() if key not in SERVER_OWNED_METADATA}


def _get(document: Any, *keys: str) -> Any:
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def _placed_in_namespace(resource: Resource) -> Resource:
    namespace = (resource.metadata.namespace or "default") if resource.NAMESPACED else ""
    if namespace == resource.metadata.namespace:
        return resource
    metadata = msgspec.structs.replace(resource.metadata, namespace=namespace)
    return msgspec.structs.replace(resource, metadata=metadata)


# ---------------------------------------------------------------- conforming raw data to the schema


@dataclass
class _Findings:
    unsupported: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        messages = []
        if self.unsupported:
            noun = "fields" if len(self.unsupported) > 1 else "field"
            messages.append(f"unsupported {noun}: {', '.join(self.unsupported)}")
        return messages + self.problems


_INVALID = object()  # a mapping entry already reported, left out so msgspec does not report it again
_UNKNOWN = object()  # the type of a struct key the schema does not have


# A part of a struct, tuple or mapping value: (key, value, type, path); a plain tuple, as there is one per value.
_Part = tuple[str | int, Any, Any, str]


@cache
def _shape(tp: Any) -> type | None:
    """What a schema type opens into: msgspec.Struct, tuple or dict; None for a scalar."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return msgspec.Struct
    origin = get_origin(tp)
    return origin if origin in (tuple, dict) else None


def _parts(value: Any, tp: Any, path: str) -> list[_Part] | None:
    """The parts of a struct, tuple or mapping value, each with its type and path; None for a
    value the type does not open (a scalar, or a value of the wrong shape). The one place the
    schema's structure is walked: conforming and type checking both go through it."""
    shape = _shape(tp)
    if shape is msgspec.Struct and isinstance(value, dict):
        fields = _fields_by_wire_name(tp)
        return [(key, item, fields.get(key, _UNKNOWN), _join(path, key)) for key, item in value.items()]
    if shape is tuple and isinstance(value, list):
        item_type = get_args(tp)[0]
        return [(index, item, item_type, f"{path}[{index}]") for index, item in enumerate(value)]
    if shape is dict and isinstance(value, dict) and all(isinstance(key, str) for key in value):
        item_type = get_args(tp)[1]
        return [(key, item, item_type, _join(path, key)) for key, item in value.items()]
    return None  # a non-string mapping key included: msgspec reports it


def _assembled(tp: Any, parts: Iterable[tuple[str | int, Any]]) -> Any:
    shape = _shape(tp)
    if shape is tuple:
        return [item for _, item in parts]
    if shape is dict:
        return dict(sorted(parts))  # sorted so encoding is deterministic
    return dict(parts)


def _conform(value: Any, tp: Any, path: str, findings: _Findings) -> Any:
    """Raw data walked against the struct types: unsupported fields and bad quantities
    collected (all of them, where msgspec stops at the first), numeric quantities
    turned into strings, and mappings sorted so encoding is deterministic."""
    tp = _without_none(tp)
    if tp == Quantity:
        return _conform_quantity(value, path, findings)
    parts = _parts(value, tp, path)
    if parts is None:
        return value
    strings_only = _shape(tp) is dict and get_args(tp)[1] is str
    conformed = []
    for key, item, item_type, item_path in parts:
        if item_type is _UNKNOWN:
            findings.unsupported.append(item_path)
            continue
        if strings_only and not isinstance(item, str):
            # Reported here so the rest of the document is still converted and checked.
            _checked(item, str, item_path, findings.problems)
            continue
        item = _conform(item, item_type, item_path, findings)
        if item is not _INVALID:
            conformed.append((key, item))
    return _assembled(tp, conformed)


@cache
def _fields_by_wire_name(struct: type) -> dict[str, Any]:
    return {info.encode_name: info.type for info in msgspec.structs.fields(struct)}


@cache
def _required_wire_names(struct: type) -> tuple[str, ...]:
    return tuple(info.encode_name for info in msgspec.structs.fields(struct) if info.required)


def _conform_quantity(value: Any, path: str, findings: _Findings) -> Any:
    try:
        amount = parse_quantity(value)
    except ValueError as error:
        findings.problems.append(f"{path}: {error}")
        return _INVALID
    if amount < 0:
        findings.problems.append(f"{path}: {_quoted(value)} must not be negative")
    return _quantity_string(value)


def _quantity_string(value: str | int | float) -> str:
    # The canonical stored form is a string; repr keeps a float's digits.
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _without_none(tp: Any) -> Any:
    if isinstance(tp, types.UnionType):
        members = [member for member in get_args(tp) if member is not types.NoneType]
        if len(members) == 1:
            return members[0]
    return tp


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# ---------------------------------------------------------------- every type error, not only the first


def _checked(value: Any, tp: Any, path: str, errors: list[str]) -> Any:
    """`value` with every type error under `path` added to `errors` and each wrong part
    replaced by a stand-in of its type, so the value rules can still run over the rest.

    msgspec reports one error per conversion; checking the failed value's parts one by one
    finds the others, each with msgspec's own message. Where no part fails alone, the problem
    is the value's own (a missing field, an object where a list belongs): msgspec's error is
    the one to give. Only failed conversions are split, so a valid manifest costs nothing more,
    and the types are msgspec's, so no second set of rules can drift.
    """
    try:
        msgspec.convert(value, tp, strict=True)
        return value
    except msgspec.ValidationError as error:
        failure = error
    already = len(errors)
    repaired = _checked_parts(value, _without_none(tp), path, errors)
    if repaired is None or len(errors) == already:
        errors.append(_type_error(str(failure), path, value))
        return _stand_in(tp)
    return repaired


def _checked_parts(value: Any, tp: Any, path: str, errors: list[str]) -> Any:
    parts = _parts(value, tp, path)
    if parts is None:
        return None
    checked = [(key, _checked(item, item_type, item_path, errors))
               for key, item, item_type, item_path in parts if item_type is not _UNKNOWN]
    if _shape(tp) is msgspec.Struct:
        # In msgspec's order: the fields given, then the required fields missing.
        for name in _required_wire_names(tp):
            if name not in value:
                errors.append(f"{_join(path, name)}: required field is missing")
                checked.append((name, _stand_in(_fields_by_wire_name(tp)[name])))
    return _assembled(tp, checked)


def _stand_in(tp: Any) -> Any:
    """The plainest value of a type, in place of a part reported as wrong."""
    if isinstance(tp, types.UnionType):
        members = get_args(tp)
        return None if types.NoneType in members else _stand_in(members[0])
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        fields = _fields_by_wire_name(tp)
        return {name: _stand_in(fields[name]) for name in _required_wire_names(tp)}
    if get_origin(tp) is tuple:
        return []
    if get_origin(tp) is dict:
        return {}
    if tp == Quantity:
        return "0"
    return {int: 0, float: 0.0, bool: False}.get(tp, "")


_MSGSPEC_ERROR = re.compile(r"(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def _type_error(message: str, base: str, value: Any) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.spec.replicas`" as
    'spec.replicas: expected int, got str "three"': the path msgspec gives is under `base`
    (where the converted value is in the document), and the value is quoted, as kubectl
    quotes an invalid value, when it is the value converted and a scalar."""
    match = _MSGSPEC_ERROR.fullmatch(message)
    problem, relative = match["problem"], match["path"] or ""
    path = base + relative if base else relative.lstrip(".")
    missing = _MISSING_FIELD.fullmatch(problem)
    if missing:
        return f"{_join(path, missing['field'])}: required field is missing"
    problem = problem.replace("`", "")
    problem = problem[:1].lower() + problem[1:]
    if not relative and isinstance(value, str | int | float | bool):
        problem = f"{problem} {_shown(value)}"
    return f"{path}: {problem}" if path else problem


MAX_SHOWN_VALUE = 60  # characters of a bad value quoted in an error; a 1 MiB string is not repeated


def _shown(value: str | int | float | bool) -> str:
    if isinstance(value, str) and len(value) > MAX_SHOWN_VALUE:
        return _quoted(value[:MAX_SHOWN_VALUE] + "...")
    return _quoted(value) if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------- document order


def _is_under(error: str, type_errors: list[str]) -> bool:
    """Whether a value rule's error is about a part already reported as the wrong type
    (its stand-in would be reported again, as empty or zero)."""
    return any(error.startswith(_error_path(type_error) + end)
               for type_error in type_errors for end in (":", ".", "["))


def _error_path(error: str) -> str:
    return error.split(": ", 1)[0]


def _in_document_order(errors: list[str], document: dict) -> list[str]:
    """Errors in the order their fields come in the document, as kubectl gives them; a field
    that is missing comes after its present siblings; ties keep the order they were found in."""
    return sorted(errors, key=lambda error: _document_position(error, document))


_NOT_PRESENT = math.inf


def _document_position(error: str, document: Any) -> tuple[float, ...]:
    # The path is matched against the document's own keys, longest first, because a key may
    # hold dots (a label such as app.kubernetes.io/name) and paths are joined with dots.
    position: list[float] = []
    rest = error.removeprefix("unsupported fields: ").removeprefix("unsupported field: ")
    while rest:
        if position:
            if not rest.startswith((".", "[")):
                break
            rest = rest.removeprefix(".")
        index = re.match(r"\[(\d+)\]", rest)
        if isinstance(document, list) and index and int(index[1]) < len(document):
            position.append(int(index[1]))
            document, rest = document[int(index[1])], rest[index.end():]
        elif isinstance(document, dict) and (key := _leading_key(rest, document)) is not None:
            position.append(list(document).index(key))
            document, rest = document[key], rest[len(key):]
        else:
            position.append(_NOT_PRESENT)
            break
    return tuple(position)


def _leading_key(text: str, mapping: dict) -> str | None:
    keys = [key for key in mapping if isinstance(key, str) and text.startswith(key)
            and text[len(key):len(key) + 1] in ("", ".", "[", ":")]
    return max(keys, key=len, default=None)


# ---------------------------------------------------------------- semantic rules


class _NameRule(NamedTuple):
    description: str
    matches: Callable[[str], bool]


def _pattern_rule(description: str, pattern: str, max_length: int) -> _NameRule:
    compiled = re.compile(pattern)
    return _NameRule(description, lambda value: len(value) <= max_length and bool(compiled.fullmatch(value)))


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"

DNS_LABEL = _pattern_rule(
    "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit,"
    " at most 63 characters)",
    _LABEL,
    63,
)
DNS_SUBDOMAIN = _pattern_rule(
    "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', each part starting and ending with"
    " a letter or digit, at most 253 characters)",
    rf"{_LABEL}(\.{_LABEL})*",
    253,
)
LABEL_VALUE = _pattern_rule(
    "a valid label value (empty, or letters, digits, '-', '_' and '.', starting and ending with a letter"
    " or digit, at most 63 characters)",
    rf"({_QUALIFIED})?",
    63,
)
PORT_NAME = _pattern_rule(
    "a valid port name (lowercase letters, digits and '-', with at least one letter, at most 15 characters)",
    r"(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?",
    15,
)


def _is_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not DNS_SUBDOMAIN.matches(prefix):
        return False
    return len(name) <= 63 and re.fullmatch(_QUALIFIED, name) is not None


QUALIFIED_NAME = _NameRule(
    "a valid key (an optional DNS-1123 subdomain prefix and '/', then letters, digits, '-', '_' and '.',"
    " starting and ending with a letter or digit, at most 63 characters)",
    _is_qualified_name,
)


def _name_errors(path: str, value: str, rule: _NameRule) -> Iterator[str]:
    if not rule.matches(value):
        yield f"{path}: {_quoted(value)} is not {rule.description}"


def _choice_errors(path: str, value: str, choices: tuple[str, ...]) -> Iterator[str]:
    if value not in choices:
        yield f"{path}: {_quoted(value)} is not one of {', '.join(choice for choice in choices if choice)}"


def _range_errors(path: str, value: int, low: int, high: int | None = None) -> Iterator[str]:
    if value < low:
        yield f"{path}: must be {low} or more, got {value}"
    elif high is not None and value > high:
        yield f"{path}: must be at most {high}, got {value}"


def _labels_errors(path: str, labels: dict[str, str]) -> Iterator[str]:
    for key, value in labels.items():
        yield from _name_errors(f"{path}.{key}", key, QUALIFIED_NAME)
        yield from _name_errors(f"{path}.{key}", value, LABEL_VALUE)


def _annotations_errors(path: str, annotations: dict[str, str]) -> Iterator[str]:
    for key in annotations:
        yield from _name_errors(f"{path}.{key}", key, QUALIFIED_NAME)


def _resource_errors(resource: Resource) -> list[str]:
    errors = list(_metadata_errors(resource))
    if isinstance(resource, Deployment):
        errors.extend(_deployment_spec_errors(resource.spec))
    elif isinstance(resource, Pod):
        errors.extend(_pod_spec_errors(resource.spec, "spec"))
    else:
        errors.extend(_node_spec_errors(resource.spec))
    return errors


def _metadata_errors(resource: Resource) -> Iterator[str]:
    metadata: ObjectMeta = resource.metadata
    name_rule = DNS_SUBDOMAIN if isinstance(resource, Node) else DNS_LABEL
    yield from _name_errors("metadata.name", metadata.name, name_rule)
    if resource.NAMESPACED:
        yield from _name_errors("metadata.namespace", metadata.namespace, DNS_LABEL)
    yield from _labels_errors("metadata.labels", metadata.labels)
    yield from _annotations_errors("metadata.annotations", metadata.annotations)


def _deployment_spec_errors(spec: DeploymentSpec) -> Iterator[str]:
    yield from _range_errors("spec.replicas", spec.replicas, 0)
    yield from _range_errors("spec.minReadySeconds", spec.min_ready_seconds, 0)
    yield from _range_errors("spec.revisionHistoryLimit", spec.revision_history_limit, 0)
    yield from _selector_errors(spec)
    yield from _labels_errors("spec.template.metadata.labels", spec.template.metadata.labels)
    yield from _annotations_errors("spec.template.metadata.annotations", spec.template.metadata.annotations)
    yield from _pod_spec_errors(spec.template.spec, "spec.template.spec")
    if spec.template.spec.restart_policy != "Always":
        policy = _quoted(spec.template.spec.restart_policy)
        yield f"spec.template.spec.restartPolicy: {policy} is not supported in a Deployment (only Always)"
    yield from _strategy_errors(spec.strategy)


def _selector_errors(spec: DeploymentSpec) -> Iterator[str]:
    match_labels = spec.selector.match_labels
    if not match_labels:
        yield "spec.selector.matchLabels: at least one label is required"
        return
    yield from _labels_errors("spec.selector.matchLabels", match_labels)
    template_labels = spec.template.metadata.labels
    if any(template_labels.get(key) != value for key, value in match_labels.items()):
        yield "spec.selector.matchLabels: does not match spec.template.metadata.labels"


_PERCENT = re.compile(r"\d+%")
EMPTY_DIR_MEDIA = ("", "Memory")


def _strategy_errors(strategy: DeploymentStrategy) -> Iterator[str]:
    yield from _choice_errors("spec.strategy.type", strategy.type, STRATEGY_TYPES)
    rolling = strategy.rolling_update
    if rolling is None:
        return
    if strategy.type == "Recreate":
        yield "spec.strategy.rollingUpdate: may not be set when spec.strategy.type is Recreate"
    for name, amount in (("maxSurge", rolling.max_surge), ("maxUnavailable", rolling.max_unavailable)):
        if isinstance(amount, int) and amount < 0 or isinstance(amount, str) and not _PERCENT.fullmatch(amount):
            yield f"spec.strategy.rollingUpdate.{name}: {_quoted(amount)} is not a count or a percentage"
    if rolling.max_surge in (0, "0%") and rolling.max_unavailable in (0, "0%"):
        yield "spec.strategy.rollingUpdate: maxSurge and maxUnavailable may not both be 0"


def _pod_spec_errors(spec: PodSpec, path: str) -> Iterator[str]:
    if not spec.containers:
        yield f"{path}.containers: at least one container is required"
    seen_names: set[str] = set()
    for index, container in enumerate(spec.containers):
        container_path = f"{path}.containers[{index}]"
        if container.name in seen_names:
            yield f"{container_path}.name: {_quoted(container.name)} is already the name of another container"
        seen_names.add(container.name)
        yield from _container_errors(container, container_path)
        yield from _mount_volume_errors(container, container_path, {volume.name for volume in spec.volumes})
    yield from _choice_errors(f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    yield from _labels_errors(f"{path}.nodeSelector", spec.node_selector)
    if spec.node_name:
        yield from _name_errors(f"{path}.nodeName", spec.node_name, DNS_SUBDOMAIN)
    yield from _range_errors(f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds, 0)
    for index, toleration in enumerate(spec.tolerations):
        yield from _toleration_errors(toleration, f"{path}.tolerations[{index}]")
    yield from _volumes_errors(spec.volumes, f"{path}.volumes")


def _volumes_errors(volumes: tuple[Volume, ...], path: str) -> Iterator[str]:
    # A volume's name becomes a directory of the pod's on the node: a DNS-1123 label cannot leave it.
    seen: set[str] = set()
    for index, volume in enumerate(volumes):
        volume_path = f"{path}[{index}]"
        yield from _name_errors(f"{volume_path}.name", volume.name, DNS_LABEL)
        if volume.name in seen:
            yield f"{volume_path}.name: {_quoted(volume.name)} is already the name of another volume"
        seen.add(volume.name)
        if volume.empty_dir is not None and volume.empty_dir.medium not in EMPTY_DIR_MEDIA:
            medium = _quoted(volume.empty_dir.medium)
            yield f'{volume_path}.emptyDir.medium: {medium} is not "" (the node\'s disk) or "Memory"'


def _mount_volume_errors(container: Container, path: str, volume_names: set[str]) -> Iterator[str]:
    for index, mount in enumerate(container.volume_mounts):
        if mount.name not in volume_names:
            yield f"{path}.volumeMounts[{index}].name: {_quoted(mount.name)} is not a volume of the pod"


def _container_errors(container: Container, path: str) -> Iterator[str]:
    yield from _name_errors(f"{path}.name", container.name, DNS_LABEL)
    yield from _choice_errors(f"{path}.imagePullPolicy", container.image_pull_policy, IMAGE_PULL_POLICIES)
    for index, variable in enumerate(container.env):
        if not variable.name or "=" in variable.name:
            yield f"{path}.env[{index}].name: {_quoted(variable.name)} must be non-empty and contain no '='"
    for index, port in enumerate(container.ports):
        yield from _port_errors(port, f"{path}.ports[{index}]")
    for index, mount in enumerate(container.volume_mounts):
        yield from _volume_mount_errors(mount, f"{path}.volumeMounts[{index}]")
    yield from _requirements_errors(container.resources, f"{path}.resources")
    if container.security_context is not None:
        yield from _security_context_errors(container.security_context, f"{path}.securityContext")
    for name, probe in (
        ("livenessProbe", container.liveness_probe),
        ("readinessProbe", container.readiness_probe),
        ("startupProbe", container.startup_probe),
    ):
        if probe is not None:
            yield from _probe_errors(probe, f"{path}.{name}", must_succeed_once=name != "readinessProbe")


def _security_context_errors(context: SecurityContext, path: str) -> Iterator[str]:
    # runc takes a uid/gid as an unsigned number: a negative one fails only when the container starts.
    for name, value in (("runAsUser", context.run_as_user), ("runAsGroup", context.run_as_group)):
        if value is not None:
            yield from _range_errors(f"{path}.{name}", value, 0)


def _port_errors(port: ContainerPort, path: str) -> Iterator[str]:
    yield from _range_errors(f"{path}.containerPort", port.container_port, 1, 65535)
    yield from _range_errors(f"{path}.hostPort", port.host_port, 0, 65535)
    yield from _choice_errors(f"{path}.protocol", port.protocol, PROTOCOLS)
    if port.name:
        yield from _name_errors(f"{path}.name", port.name, PORT_NAME)


def _volume_mount_errors(mount: VolumeMount, path: str) -> Iterator[str]:
    yield from _name_errors(f"{path}.name", mount.name, DNS_LABEL)
    if not mount.mount_path.startswith("/") or ".." in mount.mount_path.split("/"):
        yield f"{path}.mountPath: {_quoted(mount.mount_path)} must be an absolute path without '..'"


def _requirements_errors(resources: ResourceRequirements, path: str) -> Iterator[str]:
    for group, amounts in (("requests", resources.requests), ("limits", resources.limits)):
        for name in amounts:
            yield from _choice_errors(f"{path}.{group}.{name}", name, RESOURCE_NAMES)
    for name, request in resources.requests.items():
        limit = resources.limits.get(name)
        if limit is not None and parse_quantity(request) > parse_quantity(limit):
            yield f"{path}.requests.{name}: {_quoted(request)} is more than limits.{name} {_quoted(limit)}"


def _probe_errors(probe: Probe, path: str, *, must_succeed_once: bool) -> Iterator[str]:
    handlers = [handler for handler in (probe.exec, probe.http_get, probe.tcp_socket) if handler is not None]
    if len(handlers) != 1:
        yield f"{path}: exactly one of exec, httpGet, tcpSocket is required (got {len(handlers)})"
    if probe.exec is not None and not probe.exec.command:
        yield f"{path}.exec.command: at least one word is required"
    if probe.http_get is not None:
        yield from _choice_errors(f"{path}.httpGet.scheme", probe.http_get.scheme, HTTP_SCHEMES)
        yield from _probe_port_errors(probe.http_get.port, f"{path}.httpGet.port")
    if probe.tcp_socket is not None:
        yield from _probe_port_errors(probe.tcp_socket.port, f"{path}.tcpSocket.port")
    yield from _range_errors(f"{path}.initialDelaySeconds", probe.initial_delay_seconds, 0)
    yield from _range_errors(f"{path}.periodSeconds", probe.period_seconds, 1)
    yield from _range_errors(f"{path}.timeoutSeconds", probe.timeout_seconds, 1)
    yield from _range_errors(f"{path}.failureThreshold", probe.failure_threshold, 1)
    if must_succeed_once:
        yield from _range_errors(f"{path}.successThreshold", probe.success_threshold, 1, 1)
    else:
        yield from _range_errors(f"{path}.successThreshold", probe.success_threshold, 1)


def _probe_port_errors(port: int | str, path: str) -> Iterator[str]:
    if isinstance(port, int):
        yield from _range_errors(path, port, 1, 65535)
    else:
        yield from _name_errors(path, port, PORT_NAME)


def _toleration_errors(toleration: Toleration, path: str) -> Iterator[str]:
    yield from _choice_errors(f"{path}.operator", toleration.operator, TOLERATION_OPERATORS)
    yield from _choice_errors(f"{path}.effect", toleration.effect, ("",) + TAINT_EFFECTS)
    if toleration.key:
        yield from _name_errors(f"{path}.key", toleration.key, QUALIFIED_NAME)
    elif toleration.operator != "Exists":
        yield f"{path}.operator: must be Exists when key is empty"
    if toleration.operator == "Exists" and toleration.value:
        yield f"{path}.value: must be empty when operator is Exists"


def _node_spec_errors(spec: NodeSpec) -> Iterator[str]:
    for name in spec.capacity:
        yield from _choice_errors(f"spec.capacity.{name}", name, RESOURCE_NAMES)
    seen: set[tuple[str, str]] = set()
    for index, taint in enumerate(spec.taints):
        path = f"spec.taints[{index}]"
        yield from _name_errors(f"{path}.key", taint.key, QUALIFIED_NAME)
        yield from _name_errors(f"{path}.value", taint.value, LABEL_VALUE)
        yield from _choice_errors(f"{path}.effect", taint.effect, TAINT_EFFECTS)
        if (taint.key, taint.effect) in seen:
            yield f"{path}: another taint has key {_quoted(taint.key)} and effect {taint.effect}"
        seen.add((taint.key, taint.effect))


def _quoted(value: Any) -> str:
    # JSON quoting keeps every error on one line whatever the input holds.
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
