"""Searching a pod's log as `less` does: every match highlighted, `n`/`N` step to the next or previous line.

Pure: lines in, line numbers out; the log screen draws and scrolls.
"""

from __future__ import annotations

import bisect
import re


class LogSearch:
    """A pattern (a regex when it compiles, else the literal text; case-insensitive unless it has capitals)
    and the lines it matches, kept in order as lines arrive."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        flags = 0 if any(c.isupper() for c in pattern) else re.IGNORECASE  # less's -i "smart case"
        try:
            self.regex = re.compile(pattern, flags)
        except re.error:
            self.regex = re.compile(re.escape(pattern), flags)
        self.hits: list[int] = []  # line numbers with a match, ascending
        self.current: int | None = None  # the line number of the match on show

    def spans(self, line: str) -> list[tuple[int, int]]:
        """Where the pattern matches in one line (empty matches skipped)."""
        return [m.span() for m in self.regex.finditer(line) if m.end() > m.start()]

    def scan(self, number: int, line: str) -> bool:
        """Note line `number` (numbers only grow); whether it matches."""
        if self.spans(line):
            self.hits.append(number)
            return True
        return False

    def step(self, direction: int, from_line: int) -> int | None:
        """The next (1) or previous (-1) matching line after/before the current match, or from `from_line`
        when there is none yet; it wraps around the ends as `less` does with its wrap option. None: no match."""
        if not self.hits:
            return None
        origin = self.current if self.current is not None else from_line - direction
        if direction > 0:
            index = bisect.bisect_right(self.hits, origin)
            self.current = self.hits[index % len(self.hits)]
        else:
            index = bisect.bisect_left(self.hits, origin) - 1
            self.current = self.hits[index] if index >= 0 else self.hits[-1]
        return self.current

    def position(self) -> str:
        """`match 3 of 17`, for the title bar."""
        if not self.hits:
            return f"/{self.pattern}: no match"
        if self.current is None:
            return f"/{self.pattern}: {len(self.hits)} matches"
        return f"/{self.pattern}: match {bisect.bisect_left(self.hits, self.current) + 1} of {len(self.hits)}"
