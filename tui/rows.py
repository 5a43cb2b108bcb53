"""The rows a resource view shows: objects by stable key, folded live as time travel does, filtered, sorted, paged.

Pure: no Textual and no I/O, so the view logic is tested without a terminal.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from dockyard import printers
from dockyard.eventlog import EventRecord, parse_subject
from dockyard.schemas.manifests import KINDS, Node, subject_kind
from dockyard.selectors import Requirement, SelectorError, matches, parse_selector
from dockyard.state import HeldImages
from dockyard.timetravel import HELD_IMAGES_KIND, evolve_joined

Obj = dict[str, Any]
Key = str
PAGE_SIZE = 200  # rows a table holds at once: 100,000 pods never become 100,000 table rows


def key_of(namespace: str, name: str) -> Key:
    return f"{namespace}/{name}"


@dataclass(frozen=True)
class Query:
    """What the user asked to see: a text (substring, or regex if it compiles) and a label selector."""

    text: str = ""
    selector: str = ""

    @classmethod
    def parse(cls, raw: str) -> Query:
        """`web`, `^web-[0-9]`, `-l app=web`, or `-l app=web nginx`."""
        raw = raw.strip()
        if raw.startswith("-l"):
            parts = raw[2:].strip().split(None, 1)
            return cls(text=parts[1] if len(parts) > 1 else "", selector=parts[0] if parts else "")
        return cls(text=raw)

    def matcher(self):
        """A test on a lowercased line; None when every line matches."""
        if not self.text:
            return None
        needle = self.text.lower()
        if re.escape(needle) == needle:  # plain text: `in` is several times faster than a regex
            return lambda line: needle in line
        try:
            pattern = re.compile(needle)
        except re.error:
            return lambda line: needle in line
        return lambda line: pattern.search(line) is not None


@dataclass
class Change:
    """What the table must do to show the current page: rows to remove, add (in order) and update."""

    removed: list[Key] = field(default_factory=list)
    added: list[tuple[Key, list[str]]] = field(default_factory=list)
    updated: list[tuple[Key, list[str]]] = field(default_factory=list)
    reordered: bool = False


class ResourceRows:
    """Every object of one kind, with its table cells; the page on show and how to change it."""

    def __init__(self, kind: str, wide: bool = False, namespace: str = "", page_size: int = PAGE_SIZE):
        self.kind = kind
        self.wide = wide
        self.namespace = namespace  # "" is every namespace
        self.page_size = page_size
        self.objects: dict[Key, Obj] = {}
        self.cells: dict[Key, list[str]] = {}
        self.lines: dict[Key, str] = {}  # the cells joined, lowercased: what the text filter searches
        self.label_sets: dict[Key, dict[str, str]] = {}
        self.query = Query()
        self.sort_column: int | None = None
        self.sort_reverse = False
        self.page = 0
        self.shown: list[Key] = []
        self.matching = 0
        self.position = 0
        self.structural = False
        self.matched: set[Key] = set()  # every key the query matched at the last full refresh
        self.phases: Counter[str] = Counter()  # objects by status.phase ("" for none): the dashboard's figures
        # nodes: each one's last image report, as of `position` (the loader sets it), joined on as time travel does
        self.held: HeldImages = {}
        # every key in the order on show, kept while no key comes or goes and no sort cell changes, so a
        # key press filters 100,000 keys in order instead of sorting them again
        self._order: list[Key] | None = None
        self._order_by: tuple[int | None, bool] = (None, False)

    @property
    def namespaced(self) -> bool:
        return KINDS[self.kind].NAMESPACED

    @property
    def headers(self) -> list[str]:
        headers, _ = printers.table_rows(self.kind, [], self.wide, all_namespaces=self.namespaced)
        return headers

    @property
    def joins_held_images(self) -> bool:
        return KINDS.get(self.kind) is Node

    @property
    def subject_kinds(self) -> tuple[str, ...]:
        """The kinds of the subjects folded into these rows: a node's own, and its image reports'."""
        kind = subject_kind(self.kind)
        return (kind, HELD_IMAGES_KIND) if self.joins_held_images else (kind,)

    def records_of(self, by_kind: dict[str, list[EventRecord]]) -> list[EventRecord]:
        """This store's records of a burst grouped by subject kind, in log order."""
        lists = [by_kind[kind] for kind in self.subject_kinds if by_kind.get(kind)]
        if len(lists) <= 1:
            return lists[0] if lists else []
        return list(heapq.merge(*lists, key=lambda record: record.seq))

    def clear(self) -> None:
        self.objects.clear(), self.cells.clear(), self.lines.clear(), self.label_sets.clear()
        self.phases.clear(), self.held.clear()
        self.shown, self._order = [], None

    def _set(self, key: Key, obj: Obj) -> None:
        _, rows = printers.table_rows(self.kind, [obj], self.wide, all_namespaces=self.namespaced)
        self._store(key, obj, rows[0], (obj.get("metadata") or {}).get("labels") or {})

    def _store(self, key: Key, obj: Obj, cells: list[str], labels: dict[str, str]) -> None:
        """Keep one object's row, and what follows from it: the order on show, the phase counts."""
        self._note_order(key, cells)
        self._count(self.objects.get(key), -1)
        self._count(obj, 1)
        self.objects[key] = obj
        self.cells[key] = cells
        self.lines[key] = " ".join(cells).lower()
        self.label_sets[key] = labels

    def load(self, objects: Iterable[Obj], position: int) -> None:
        for obj in objects:
            meta = obj.get("metadata") or {}
            self._set(key_of(meta.get("namespace", ""), meta.get("name", "")), obj)
        self.position = position

    def set_wide(self, wide: bool) -> None:
        self.wide = wide
        for key, obj in list(self.objects.items()):
            self._set(key, obj)

    def restamp_shown(self) -> set[Key]:
        """Recompute the cells of the rows on show (their AGE moves with the clock); the keys."""
        for key in self.shown:
            self._set(key, self.objects[key])
        return set(self.shown)

    def absorb(self, records: Iterable[EventRecord]) -> set[Key]:
        """Fold events into the objects; the keys that changed (`self.structural` says if any came or went)."""
        changed: set[Key] = set()
        self.structural = False
        for record in records:
            if record.seq <= self.position:
                continue
            self.position = record.seq
            _, namespace, name = parse_subject(record.subject)
            key = key_of(namespace, name)
            before = self.objects.get(key)
            current = msgspec.convert(before, KINDS[self.kind]) if before is not None else None
            after = evolve_joined(current, record, self.held)
            if after is None:
                if before is not None:
                    self.structural = True
                    self._forget(key)
                    changed.add(key)
            else:
                self.structural = self.structural or before is None
                self._set(key, msgspec.to_builtins(after))
                changed.add(key)
        return changed

    def _note_order(self, key: Key, cells: list[str]) -> None:
        """Drop the kept order if this row's new cells could move it."""
        before = self.cells.get(key)
        column = self._order_by[0]
        if before is None or (column is not None and before[column] != cells[column]):
            self._order = None

    def _ordered(self) -> list[Key]:
        """Every key in the order on show: by the sort column's cells, else by key."""
        order_by = (self.sort_column, self.sort_reverse)
        if self._order is None or order_by != self._order_by:
            column, cells = self.sort_column, self.cells
            self._order = sorted(cells) if column is None else \
                sorted(cells, key=lambda k: _sortable(cells[k][column]), reverse=self.sort_reverse)
            self._order_by = order_by
        return self._order

    def _forget(self, key: Key) -> None:
        self._order = None
        self._count(self.objects[key], -1)
        del self.objects[key], self.cells[key], self.lines[key], self.label_sets[key]

    def _count(self, obj: Obj | None, step: int) -> None:
        if obj is not None:
            self.phases[(obj.get("status") or {}).get("phase") or ""] += step

    def _requirements(self):
        try:
            return parse_selector(self.query.selector)
        except SelectorError:
            return ()

    def _matches(self, key: Key) -> bool:
        text_matches, requirements = self.query.matcher(), self._requirements()
        return ((text_matches is None or text_matches(self.lines[key]))
                and (not self.namespace or key.startswith(key_of(self.namespace, "")))
                and (not requirements or matches(self.label_sets[key], requirements)))

    def visible_keys(self) -> list[Key]:
        """The filtered, sorted keys of the current page (and `matching`, how many match in all)."""
        text_matches = self.query.matcher()
        requirements = self._requirements()
        keys, lines = self._ordered(), self.lines
        if text_matches is not None:
            keys = [k for k in keys if text_matches(lines[k])]
        if self.namespace:
            prefix = key_of(self.namespace, "")
            keys = [k for k in keys if k.startswith(prefix)]
        for requirement in requirements:
            keys = _with_labels(keys, self.label_sets, requirement)
        self.matching = len(keys)
        self.matched = set(keys)
        last_page = max(0, (len(keys) - 1) // self.page_size)
        self.page = min(self.page, last_page)
        start = self.page * self.page_size
        return keys[start:start + self.page_size]

    def refresh(self, changed: set[Key] | None = None) -> Change:
        """The change that takes the table from the page it shows to the page it should show.

        `changed` None means every shown row may differ (a new filter, sort or page).
        """
        if changed is not None and not self.structural and self._order is not None and \
                all((key in self.matched) == self._matches(key) for key in changed):
            # the common live case: rows changed but none came, went, or crossed the filter
            shown = set(self.shown)
            return Change(updated=[(k, self.cells[k]) for k in changed if k in shown])
        wanted = self.visible_keys()
        wanted_set, shown_set = set(wanted), set(self.shown)
        change = Change(removed=[k for k in self.shown if k not in wanted_set])
        change.added = [(k, self.cells[k]) for k in wanted if k not in shown_set]
        kept = [k for k in self.shown if k in wanted_set]
        candidates = kept if changed is None else [k for k in kept if k in changed]
        change.updated = [(k, self.cells[k]) for k in candidates]
        change.reordered = kept + [k for k, _ in change.added] != wanted
        self.shown = wanted
        return change


def _with_labels(keys: list[Key], label_sets: dict[Key, dict[str, str]], requirement: Requirement) -> list[Key]:
    """The keys whose labels meet one requirement; `key=value`, the usual one, without a call per key."""
    if requirement.operator == "=":
        name, value = requirement.key, requirement.values[0]
        return [k for k in keys if label_sets[k].get(name) == value]
    return [k for k in keys if matches(label_sets[k], (requirement,))]


def _sortable(cell: str) -> tuple[int, Any]:
    """Numbers sort as numbers (RESTARTS, READY's first part), the rest as text."""
    head = cell.split("/", 1)[0]
    return (0, int(head)) if head.isdigit() else (1, cell)
