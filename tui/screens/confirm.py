"""Confirmations for actions: Cancel is the focused default, so Enter alone changes nothing."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; dismisses with True only when the user picks the action's button."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, action_label: str = "OK"):
        super().__init__()
        self.question = question
        self.action_label = action_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.action_label, id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


class ScaleScreen(ModalScreen[int | None]):
    """Ask for a replica count; Escape (or an empty or bad number) cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str, replicas: int):
        super().__init__()
        self.target = name
        self.replicas = replicas

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Scale deployment/{self.target} (now {self.replicas}) to:")
            yield Input(value=str(self.replicas), id="replicas", type="integer")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Scale", id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def _value(self) -> int | None:
        raw = self.query_one("#replicas", Input).value.strip()
        return int(raw) if raw.isdigit() else None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#cancel", Button).focus()  # Enter in the box never scales: Tab to Scale, then Enter

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._value() if event.button.id == "confirm" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
