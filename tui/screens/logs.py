"""A pod's log, followed live: lines arrive from a worker through the client layer; `/` searches them.

`p` shows the container's previous run instead (k9s' "previous", `dockyard logs -p`): a run that ended,
read once, not followed.
"""

from __future__ import annotations

from itertools import islice

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, RichLog, Static

from dockyard.tui.logsearch import LogSearch

TAIL = 200  # lines of history shown first; `a` shows the whole log
MAX_LINES = 10_000  # lines kept; past it the oldest TRIM go (and the view is drawn again, once per TRIM lines)
TRIM = 1_000
MATCH_STYLE = "reverse"


class LogScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "back", "Back"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "step(1)", "Next"),
        Binding("N", "step(-1)", "Prev", key_display="N"),
        Binding("f", "toggle_follow", "Follow"),
        Binding("a", "toggle_tail", "All/tail"),
        Binding("t", "toggle_timestamps", "Timestamps"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("p", "toggle_previous", "Previous"),
    ]

    def __init__(self, client, namespace: str, pod: str):
        super().__init__()
        self.client = client
        self.namespace = namespace
        self.pod = pod
        self.timestamps = False
        self.follow = True
        self.tail: int | None = TAIL
        self.previous = False  # the run before the current one
        self.lines: list[str] = []
        self.search: LogSearch | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="log-title", classes="page-title", markup=False)
        yield RichLog(id="log", wrap=False, markup=False, highlight=False)
        yield Input(id="log-search", placeholder="search: text or regex (smart case); Enter, then n / N")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self.follow_log()

    @property
    def log_view(self) -> RichLog:
        return self.query_one("#log", RichLog)

    def update_title(self) -> None:
        parts = [f"logs {self.namespace}/{self.pod}",
                 "previous run" if self.previous else "following" if self.follow else "paused",
                 f"tail {self.tail}" if self.tail else "all lines"]
        if self.timestamps:
            parts.append("timestamps")
        if self.search is not None:
            parts.append(self.search.position())
        self.query_one("#log-title", Static).update("  ·  ".join(parts))

    # ------------------------------------------------------------ lines

    @work(exclusive=True, exit_on_error=False)
    async def follow_log(self) -> None:
        self.lines = []
        if self.search is not None:
            self.search = LogSearch(self.search.pattern)
        self.log_view.clear()
        self.update_title()
        try:
            await self.client.logs(self.namespace, self.pod, self.add_line, follow=True, tail=self.tail,
                                   timestamps=self.timestamps, previous=self.previous)
        except ValueError as exc:  # no such run (none before this one): kubectl's words, in the pane
            self.log_view.write(f"[{exc}]")
        except Exception as exc:  # never a traceback: say what went wrong in the pane
            self.log_view.write(f"[logs unavailable: {exc}]")

    def add_line(self, line: str) -> None:
        if len(self.lines) >= MAX_LINES:
            self.lines = self.lines[TRIM:]
            self.rescan()
            self.redraw()
        number = len(self.lines)
        self.lines.append(line)
        if self.search is not None and self.search.scan(number, line):
            self.update_title()
        self._draw(number)

    def _draw(self, number: int) -> None:
        log = self.log_view
        text = Text(self.lines[number], no_wrap=not log.wrap)
        if self.search is not None:
            for start, end in self.search.spans(self.lines[number]):
                text.stylize(MATCH_STYLE, start, end)
        log.write(text, scroll_end=self.follow)

    def redraw(self) -> None:
        """Draw every kept line again: a new search's highlights, or wrap toggled."""
        self.log_view.clear()
        for number in range(len(self.lines)):
            self._draw(number)

    def rescan(self) -> None:
        if self.search is not None:
            self.search = LogSearch(self.search.pattern)
            for number, line in enumerate(self.lines):
                self.search.scan(number, line)

    def _heights(self):
        """Screen rows of each kept line: one each unless wrapped."""
        log = self.log_view
        width = max(1, log.scrollable_content_region.width)
        return (max(1, -(-cell_len(line) // width)) if log.wrap else 1 for line in self.lines)

    def row_of(self, number: int) -> int:
        """The screen row line `number` starts on."""
        return number if not self.log_view.wrap else sum(islice(self._heights(), number))

    # ------------------------------------------------------------ search

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.value = self.search.pattern if self.search else ""
        box.display = True
        box.focus()

    def on_key(self, event) -> None:
        box = self.query_one("#log-search", Input)
        if box.has_focus and event.key == "escape":
            box.display = False
            self.log_view.focus()
            event.stop()

    @on(Input.Submitted, "#log-search")
    def search_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#log-search", Input)
        box.display = False
        self.log_view.focus()
        pattern = event.value
        self.search = LogSearch(pattern) if pattern else None
        self.rescan()
        self.redraw()
        if self.search is not None:
            self.action_step(1)
        self.update_title()

    def action_step(self, direction: int) -> None:
        if self.search is None:
            return
        top = self._top_line()
        number = self.search.step(direction, top)
        self.update_title()
        if number is None:
            return
        self.follow = False  # a match on show stays on show while lines arrive
        self.log_view.auto_scroll = False
        self.log_view.scroll_to(y=self.row_of(number), animate=False)

    def _top_line(self) -> int:
        """The first line on show."""
        top, row = round(self.log_view.scroll_y), 0
        for number, height in enumerate(self._heights()):
            if row >= top:
                return number
            row += height
        return len(self.lines)

    # ------------------------------------------------------------ modes

    def action_back(self) -> None:
        self.dismiss()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        self.log_view.auto_scroll = self.follow
        if self.follow:
            self.log_view.scroll_end(animate=False)
        self.update_title()

    def action_toggle_tail(self) -> None:
        self.tail = None if self.tail else TAIL
        self.follow_log()

    def action_toggle_previous(self) -> None:
        self.previous = not self.previous
        self.follow_log()

    def action_toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self.follow_log()

    def action_toggle_wrap(self) -> None:
        self.log_view.wrap = not self.log_view.wrap
        self.redraw()
