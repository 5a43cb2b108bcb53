"""A pod's log, followed live: lines arrive from a worker through the client layer."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Footer, RichLog, Static


class LogScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Back"),
        Binding("t", "toggle_timestamps", "Timestamps"),
        Binding("w", "toggle_wrap", "Wrap"),
    ]

    def __init__(self, client, namespace: str, pod: str):
        super().__init__()
        self.client = client
        self.namespace = namespace
        self.pod = pod
        self.timestamps = False

    def compose(self) -> ComposeResult:
        yield Static(f"logs {self.namespace}/{self.pod} (following)", classes="page-title")
        yield RichLog(id="log", wrap=False, markup=False, highlight=False, max_lines=10_000)
        yield Footer()

    def on_mount(self) -> None:
        self.follow_log()

    @work(exclusive=True, exit_on_error=False)
    async def follow_log(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        try:
            await self.client.logs(self.namespace, self.pod, log.write, follow=True, timestamps=self.timestamps)
        except Exception as exc:  # never a traceback: say what went wrong in the pane
            log.write(f"[logs unavailable: {exc}]")

    def action_toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self.follow_log()

    def action_toggle_wrap(self) -> None:
        log = self.query_one(RichLog)
        log.wrap = not log.wrap
