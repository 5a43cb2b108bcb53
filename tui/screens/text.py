"""A full-screen text page: describe, YAML, explain, history and help; Escape or q closes it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.screen import ModalScreen
from textual.widgets import Footer, Static


class TextScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Back")]

    def __init__(self, title: str, body: str):
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, classes="page-title")
        with ScrollableContainer(classes="page"):
            yield Static(self.body, markup=False, id="page-body")
        yield Footer()
