"""`dockyard console`: the Textual app: views, command mode, filters, row actions and the live follower."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Callable

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, Static

from dockyard import cli_images, printers
from dockyard.eventlog import EventRecord
from dockyard.manifests import DNS_LABEL
from dockyard.tui.client import ConsoleClient
from dockyard.tui.records import AlertRows, ImageRows, RecordRows
from dockyard.tui.rows import ResourceRows, key_of
from dockyard.tui.screens.confirm import ConfirmScreen, ScaleScreen
from dockyard.tui.screens.logs import LogScreen
from dockyard.tui.screens.text import TextScreen
from dockyard.tui.streams import AUDIT_HEADERS, EVENT_HEADERS, RateMeter, audit_row, dashboard, event_row
from dockyard.tui.widgets.resource_table import ResourceTable

RESOURCE_VIEWS = {"pods": "Pod", "deploy": "Deployment", "nodes": "Node", "images": "Image", "alerts": "Alert"}
VIEWS = ["pods", "deploy", "nodes", "events", "audit", "images", "alerts"]
ALIASES = {
    "po": "pods", "pod": "pods", "pods": "pods",
    "deploy": "deploy", "deployment": "deploy", "deployments": "deploy", "dp": "deploy",
    "no": "nodes", "node": "nodes", "nodes": "nodes",
    "ev": "events", "event": "events", "events": "events",
    "audit": "audit", "commands": "audit", "command": "audit", "cmd": "audit",
    "images": "images", "image": "images", "img": "images", "im": "images",
    "alerts": "alerts", "alert": "alerts", "al": "alerts",
}
STREAM_ROWS = 1000  # the events and audit views keep the newest this many
MERGE_WINDOW = 0.1  # seconds a burst of events is gathered into one table change
ABSORB_SLICE = 250  # events folded at a time before the loop may draw or take a key
AGE_REFRESH = 10.0  # seconds between re-rendering the AGE of the (at most PAGE_SIZE) rows on show
RECONNECT_AFTER = 5.0  # seconds disconnected before a fresh connection to wherever the stack now is

# action -> (views it applies to, whether it changes the cluster)
ROW_ACTIONS: dict[str, tuple[set[str], bool]] = {
    "describe": ({"pods", "deploy", "nodes", "images", "alerts"}, False),
    "yaml": ({"pods", "deploy", "nodes", "images", "alerts"}, False),
    "explain": ({"pods"}, False),
    "history": ({"pods", "deploy", "nodes"}, False),
    "logs": ({"pods"}, False),
    "scale": ({"deploy"}, True),
    "delete": ({"pods", "deploy"}, True),
    "restart": ({"deploy"}, True),
    "undo": ({"deploy"}, True),
    "cordon": ({"nodes"}, True),
    "uncordon": ({"nodes"}, True),
    "drain": ({"nodes"}, True),
}


EMPTY = {  # what an empty view means, and what would fill it
    "Image": "no images indexed: `dockyard up --registry URL` runs the registry indexer",
    "Alert": "no alerts have fired",
    "Pod": "no pods: `dockyard apply -f FILE` a deployment",
    "Deployment": "no deployments: `dockyard apply -f FILE`",
    "Node": "no nodes have registered",
}
DETAILS = {  # what a confirmation adds to its question
    "drain": "\n(cordon it, then evict its pods, keeping each deployment within its maxUnavailable)",
    "restart": "\n(replace its pods, a rolling update)",
    "undo": "\n(roll back to the previous revision)",
}


class ConsoleApp(App[None]):
    CSS_PATH = "dockyard.tcss"
    TITLE = "dockyard console"
    ENABLE_COMMAND_PALETTE = False  # `:` is the command mode; the footer's room goes to the view's keys

    BINDINGS = [
        # Priority: handled as they arrive, before the keys typed after them are handed to the table
        # (`:dp` typed fast would otherwise be `d`escribe). check_action passes them on where they are text.
        Binding("colon", "prompt('command')", "Cmd", key_display=":", priority=True),
        Binding("slash", "prompt('filter')", "Filter", key_display="/", priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("1", "view('pods')", "Pods", show=False),
        Binding("2", "view('deploy')", "Deploy", show=False),
        Binding("3", "view('nodes')", "Nodes", show=False),
        Binding("4", "view('events')", "Events", show=False),
        Binding("5", "view('audit')", "Audit", show=False),
        Binding("6", "view('images')", "Images", show=False),
        Binding("7", "view('alerts')", "Alerts", show=False),
        Binding("n", "prompt('namespace')", "Namespace", show=False, priority=True),
        Binding("w", "toggle_wide", "Wide", show=False),
        Binding("o", "sort", "Sort", show=False),
        Binding("O", "sort_reverse", "Sort reverse", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", show=False, key_display="]"),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False, key_display="["),
        Binding("d", "row('describe')", "Describe"),
        Binding("y", "row('yaml')", "YAML"),
        Binding("x", "row('explain')", "Explain"),
        Binding("h", "row('history')", "History", show=False),
        Binding("l", "row('logs')", "Logs"),
        Binding("s", "row('scale')", "Scale"),
        Binding("ctrl+d", "row('delete')", "Delete", show=False),
        Binding("r", "row('restart')", "Restart", show=False),
        Binding("z", "row('undo')", "Undo", show=False),
        Binding("c", "row('cordon')", "Cordon"),
        Binding("u", "row('uncordon')", "Uncordon", show=False),
        Binding("D", "row('drain')", "Drain", show=False),
        Binding("escape", "clear_filter", "Clear", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, readonly: bool = False, client_factory: Callable | None = None, namespace: str = ""):
        super().__init__()
        self.readonly = readonly
        self.client_factory = client_factory or ConsoleClient.connect
        self.client: ConsoleClient | None = None
        self.view = "pods"
        self.stores: dict[str, ResourceRows] = {
            kind: ResourceRows(kind, namespace=namespace) for kind in ("Pod", "Deployment", "Node")}
        self.stores.update(Image=ImageRows(), Alert=AlertRows())
        self.streams: dict[str, deque[tuple[str, list[str]]]] = {
            "events": deque(maxlen=STREAM_ROWS), "audit": deque(maxlen=STREAM_ROWS)}
        self.stream_filter = ""
        self.prompt_mode = ""
        self.command_history: list[str] = []
        self.history_index = 0
        self.rate = RateMeter()
        self.live_after = 0
        self.lag: int | None = None
        self.connected = False
        self.loaded = asyncio.Event()

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static("", id="banner", markup=False)
        yield Static("connecting…", id="dashboard", markup=False)
        yield Static("", id="status", markup=False)
        yield ResourceTable(id="table")
        yield Input(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).display = False
        self.query_one("#banner").display = False
        self.show_view("pods")
        self.connect_and_follow()
        self.set_interval(5.0, self.refresh_lag)
        self.set_interval(1.0, self.update_dashboard)  # the events/s figure falls when events stop
        self.set_interval(AGE_REFRESH, self.refresh_ages)

    @property
    def table(self) -> ResourceTable:
        return self.query_one("#table", ResourceTable)

    @property
    def store(self) -> ResourceRows | None:
        kind = RESOURCE_VIEWS.get(self.view)
        return self.stores[kind] if kind else None

    # ------------------------------------------------------------ connection and the live follower

    def set_banner(self, text: str) -> None:
        banner = self.query_one("#banner", Static)
        banner.update(text)
        banner.display = bool(text)

    def _disconnected(self) -> None:
        self.connected = False
        self.set_banner("connection lost: reconnecting…")
        self.set_timer(RECONNECT_AFTER, self._reconnect_if_still_down)

    def _reconnect_if_still_down(self) -> None:
        """The stack may have come back elsewhere (`dockyard up` picks new ports): start afresh."""
        if self.connected or self.client is None:
            return
        stale, self.client = self.client, None
        self.run_worker(_close_quietly(stale), exit_on_error=False)
        self.connect_and_follow()

    def _reconnected(self) -> None:
        self.connected = True
        self.set_banner("")

    @work(exclusive=True, group="follow", exit_on_error=False)
    async def connect_and_follow(self) -> None:
        """Connect, list every kind, then follow the log; on any failure say so and start again."""
        while True:
            try:
                if self.client is None:
                    self.client = await self.client_factory(on_disconnect=self._disconnected,
                                                            on_reconnect=self._reconnected)
                await self._load()
                self.connected = True
                self.set_banner("")
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never a traceback: a banner, then try again
                self.connected = False
                self.set_banner(f"connection lost ({type(exc).__name__}: {exc}); retrying…"[:200])
                if self.client is not None and not self.client.log.nc.is_connected:
                    stale, self.client = self.client, None
                    await _close_quietly(stale)
                await asyncio.sleep(1.0)

    async def _load(self) -> None:
        """List every kind page by page; the view on show is drawn after its first page."""
        last = await self.client.last_seq()
        for kind, store in self.stores.items():
            store.clear()
            token, position, first = "", 0, True
            if isinstance(store, RecordRows):
                await self._load_records(store, last)
                continue
            while first or token:
                page = await self.client.list_page(kind, 1000 if first else 5000, token)
                store.load(page.items, max(position, page.position))
                position, token = store.position, page.continue_token
                if first and store is self.store:
                    self.render_view(full=True)
                first = False
            if store.joins_held_images:  # a later status's copy of a node's images must not win over its report
                store.held = await self.client.held_images(store.position)
        self.render_view(full=True)
        self.connected = True
        self.update_dashboard()
        gc.freeze()  # the listed objects live on: keep the collector from walking 100,000 pods on a key press
        self.loaded.set()
        self.refresh_lag()  # now, not in 5 s

    async def _load_records(self, store: RecordRows, last_seq: int) -> None:
        """Read a read model that is not an API kind; alerts then fold the log's newest events again."""
        store.position = max(0, last_seq - 200)  # folding an alert event twice is harmless
        try:
            store.load(await (self.client.alerts() if store.kind == "Alert" else self.client.images()))
        except Exception as exc:  # the database is down or behind: the rest of the console still works
            self.notify(f"{store.kind.lower()}s unavailable: {exc}"[:200], severity="warning")

    @work(exclusive=True, group="images", exit_on_error=False)
    async def reload_images(self) -> None:
        """The image index changed: read it again (the projector has folded the event by then, or soon will)."""
        store = self.stores["Image"]
        for _ in range(2):  # once now, once after the projector has surely caught up
            try:
                changed = store.replace(await self.client.images())
            except Exception:
                return
            if changed and store is self.store:
                self.render_view(changed=changed)
            await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        """Read the log live into a queue; fold what has gathered every MERGE_WINDOW into one change."""
        last = await self.client.last_seq()
        self.live_after = last  # what is read up to here fills the events view, not the events/s figure
        start = min([s.position for s in self.stores.values()] + [max(0, last - 200)]) + 1
        queue: asyncio.Queue[EventRecord] = asyncio.Queue()

        async def read() -> None:
            async for record in self.client.follow(None, start):
                queue.put_nowait(record)

        reader = asyncio.create_task(read())
        try:
            while True:
                first = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({first, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    first.cancel()
                    reader.result()  # raises what ended the reader
                    raise ConnectionError("the event stream ended")
                batch = [first.result()]
                await asyncio.sleep(MERGE_WINDOW)
                while not queue.empty():
                    batch.append(queue.get_nowait())
                for start in range(0, len(batch), ABSORB_SLICE):
                    self.absorb(batch[start:start + ABSORB_SLICE])
                    await asyncio.sleep(0)  # a key press between slices waits for one slice, not the burst
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def absorb(self, batch: list[EventRecord]) -> None:
        """Fold a burst into the stores and streams, then change the table on show in place."""
        by_kind: dict[str, list[EventRecord]] = {}
        for record in batch:
            kind = record.subject.split(".")[2] if record.subject.count(".") >= 2 else ""
            by_kind.setdefault(kind, []).append(record)
            if kind == "command":
                row = audit_row(record)
                if row:
                    self.streams["audit"].append((row[0], row))
            self.streams["events"].append((str(record.seq), event_row(record)))
        changed: set[str] = set()
        for kind, store in self.stores.items():
            keys = store.absorb(store.records_of(by_kind))
            if store is self.store:
                changed = keys
        if "image" in by_kind:
            self.reload_images()
        self.rate.add(time.monotonic(), sum(1 for record in batch if record.seq > self.live_after))
        if self.store is not None:
            if changed:
                self.render_view(changed=changed)
        else:
            self._append_stream_rows(batch)
        self.update_dashboard()

    @work(exclusive=True, group="lag", exit_on_error=False)
    async def refresh_lag(self) -> None:
        if self.client is None:
            return
        try:
            self.lag = await self.client.projection_lag()
        except Exception:
            self.lag = None
        self.update_dashboard()

    # ------------------------------------------------------------ rendering

    def refresh_ages(self) -> None:
        store = self.store
        if store is not None and store.shown:
            self.table.apply(store.refresh(store.restamp_shown()))

    def update_dashboard(self) -> None:
        pods, deployments, nodes = self.stores["Pod"], self.stores["Deployment"], self.stores["Node"]
        text = dashboard(pods, deployments, nodes, self.rate.rate(time.monotonic()), self.lag, self.connected,
                         self.stores["Alert"].firing)
        self.query_one("#dashboard", Static).update(text)

    def update_status(self) -> None:
        store = self.store
        mode = " [read-only]" if self.readonly else ""
        if store is None:
            shown = self.table.row_count
            text = f"{self.view} ({shown}, newest last)" + (f"  filter: {self.stream_filter}" if self.stream_filter else "")
        else:
            namespace = f" [{store.namespace or 'all namespaces'}]" if store.namespaced else ""
            start = store.page * store.page_size
            span = f"{start + 1}-{start + len(store.shown)}" if store.shown else "0"
            query = store.query
            filt = " ".join(p for p in (f"-l {query.selector}" if query.selector else "", query.text) if p)
            sort = f"  sort: {store.headers[store.sort_column]}{' desc' if store.sort_reverse else ''}" \
                if store.sort_column is not None else ""
            text = f"{self.view}{namespace} {span} of {store.matching}" + \
                (f"  filter: {filt}" if filt else "") + sort
            if not store.objects and self.loaded.is_set():
                text += f"  ({EMPTY[store.kind]})"
        self.query_one("#status", Static).update(text + mode)

    def render_view(self, full: bool = False, changed: set[str] | None = None) -> None:
        store = self.store
        table = self.table
        if store is None:
            self._render_stream()
            return
        if full:  # a new view or a reload: the page is built again (at most PAGE_SIZE rows)
            table.set_headers(store.headers)
            table.clear()
            store.shown = []
        change = store.refresh(None if full else changed)
        table.apply(change, [(k, store.cells[k]) for k in store.shown])
        self.update_status()

    def _stream_matches(self, cells: list[str]) -> bool:
        return not self.stream_filter or self.stream_filter.lower() in " ".join(cells).lower()

    def _render_stream(self) -> None:
        table = self.table
        table.set_headers(EVENT_HEADERS if self.view == "events" else AUDIT_HEADERS)
        table.clear()
        for key, cells in self.streams[self.view]:
            if self._stream_matches(cells):
                table.add_row(*cells, key=key)
        table.move_cursor(row=max(0, table.row_count - 1))
        self.update_status()

    def _append_stream_rows(self, batch: list[EventRecord]) -> None:
        table = self.table
        at_end = table.cursor_row >= table.row_count - 1
        for record in batch:
            cells = event_row(record) if self.view == "events" else audit_row(record)
            if cells and self._stream_matches(cells):
                table.add_row(*cells, key=str(record.seq))
        while table.row_count > STREAM_ROWS:
            table.remove_row(table.coordinate_to_cell_key((0, 0)).row_key)
        if at_end:
            table.move_cursor(row=table.row_count - 1)
        self.update_status()

    def show_view(self, view: str) -> None:
        self.view = view
        store = self.store
        if store is not None:
            store.shown = []
            self.table.clear(columns=True)
            self.table.headers = []
        self.render_view(full=True)
        self.table.focus()
        self.refresh_bindings()

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "prompt":  # not over a dialog or a page (its own `/`), nor inside the prompt itself
            prompts = self.query("#prompt")
            return self.screen is self.screen_stack[0] and not (prompts and prompts.first().has_focus)
        if action == "row" and parameters:
            views, _ = ROW_ACTIONS.get(parameters[0], (set(), False))
            return self.view in views
        if action in ("toggle_wide", "sort", "sort_reverse", "page") and self.store is None:
            return False
        return True

    def action_view(self, view: str) -> None:
        self.show_view(view)

    def action_prompt(self, mode: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self.prompt_mode = mode
        prompt.placeholder = {"command": ":pods :deploy :nodes :events :audit :images :alerts :ns NAME :q",
                              "filter": "text or regex; -l app=web for labels",
                              "namespace": "namespace (empty for all)"}[mode]
        prompt.value = ""
        prompt.display = True
        self.history_index = len(self.command_history)
        # At once, not on the next turn as Widget.focus does: keys typed right after `:` are queued
        # already and must reach the prompt, not the table (`:dp` would be `d`escribe, `p`...).
        self.screen.set_focus(prompt)

    def _close_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.display = False
        self.screen.set_focus(self.table)  # at once too: keys typed after Enter are the table's

    def on_key(self, event) -> None:
        if self.screen is not self.screen_stack[0]:  # a dialog or a page handles its own keys
            return
        prompt = self.query_one("#prompt", Input)
        if not prompt.has_focus:
            return
        if event.key == "escape":
            self._close_prompt()
            event.stop()
        elif self.prompt_mode == "command" and event.key in ("up", "down") and self.command_history:
            step = -1 if event.key == "up" else 1
            self.history_index = max(0, min(len(self.command_history) - 1, self.history_index + step))
            prompt.value = self.command_history[self.history_index]
            prompt.cursor_position = len(prompt.value)
            event.stop()

    @on(Input.Submitted, "#prompt")
    def prompt_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self._close_prompt()
        if self.prompt_mode == "command":
            self.run_command(value)
        elif self.prompt_mode == "filter":
            self.apply_filter(value)
        elif self.prompt_mode == "namespace":
            self.set_namespace(value)

    def run_command(self, command: str) -> None:
        command = command.lstrip(":").strip()
        if not command:
            return
        self.command_history.append(command)
        word, _, rest = command.partition(" ")
        if word in ("q", "quit"):
            self.exit()
        elif word in ("ns", "namespace"):
            self.set_namespace(rest.strip())
        elif word in ALIASES:
            self.show_view(ALIASES[word])
        else:
            self.notify(f"unknown command: {command}", severity="warning")

    def apply_filter(self, raw: str) -> None:
        store = self.store
        if store is None:
            self.stream_filter = raw
        else:
            from dockyard.tui.rows import Query

            store.query = Query.parse(raw)
            store.page = 0
        self.render_view()

    def action_clear_filter(self) -> None:
        self.apply_filter("")

    def set_namespace(self, namespace: str) -> None:
        namespace = "" if namespace in ("all", "-A", "*") else namespace
        if namespace and not DNS_LABEL.matches(namespace):
            self.notify(f'"{namespace}" is not a namespace name: {DNS_LABEL.description}', severity="warning")
            return
        for store in self.stores.values():
            store.namespace = namespace if store.namespaced else ""
            store.page = 0
        self.render_view()

    def action_toggle_wide(self) -> None:
        store = self.store
        store.set_wide(not store.wide)
        store.sort_column = None
        self.show_view(self.view)

    def action_sort(self) -> None:
        store = self.store
        columns = len(store.headers)
        store.sort_column = 0 if store.sort_column is None else (store.sort_column + 1) % columns
        self.render_view()

    def action_sort_reverse(self) -> None:
        store = self.store
        store.sort_reverse = not store.sort_reverse
        if store.sort_column is None:
            store.sort_column = 0
        self.render_view()

    def action_page(self, step: int) -> None:
        store = self.store
        store.page = max(0, store.page + step)
        self.render_view()

    def action_help(self) -> None:
        lines = [f"keys in the {self.view} view" + (" (read-only: actions refused)" if self.readonly else ""), ""]
        for binding in self.BINDINGS:
            action = binding.action
            name = action.split("(")[0]
            parameters = tuple(p.strip("'\"") for p in action[len(name) + 1:-1].split(",")) if "(" in action else ()
            if self.check_action(name, parameters):
                lines.append(f"  {binding.key_display or binding.key:<12} {binding.description}")
        lines += ["", "command mode: :pods :po :deploy :dp :nodes :no :events :ev :audit :images :img",
                  "  :alerts :al :ns NAME :q; up/down walk the history; numbers 1-7 switch views",
                  "logs (l): / search, n/N next/prev, f follow, a all/tail, t timestamps, w wrap,",
                  "  p previous run (the container's run before this one)"]
        self.push_screen(TextScreen("help", "\n".join(lines)))

    # ------------------------------------------------------------ row actions

    def selected(self) -> tuple[str, str, str] | None:
        """(kind, namespace, name) of the row under the cursor."""
        store, key = self.store, self.table.selected_key()
        if store is None or key is None or key not in store.objects:
            return None
        if isinstance(store, RecordRows):
            return store.kind, "", key
        namespace, _, name = key.partition("/")
        return store.kind, namespace, name

    def action_row(self, action: str) -> None:
        views, mutates = ROW_ACTIONS[action]
        if self.view not in views:
            return
        if mutates and self.readonly:
            self.notify(f"read-only console: {action} refused", severity="error")
            return
        target = self.selected()
        if target is None:
            self.notify("no row selected", severity="warning")
            return
        if self.client is None:
            self.notify("not connected", severity="error")
            return
        kind, namespace, name = target
        if action == "logs":
            self.push_screen(LogScreen(self.client, namespace, name))
        elif action in ("describe", "yaml", "explain", "history"):
            self.show_text(action, kind, namespace, name)
        elif action == "scale":
            replicas = int((self.store.objects[key_of(namespace, name)].get("spec") or {}).get("replicas", 1))
            self.push_screen(ScaleScreen(name, replicas),
                             lambda n: n is not None and self.perform("scale", kind, namespace, name, n))
        else:
            question = f"{action} {kind.lower()}/{name}?" + DETAILS.get(action, "")
            self.push_screen(ConfirmScreen(question, action.capitalize()),
                             lambda ok: ok and self.perform(action, kind, namespace, name))

    @work(group="read", exit_on_error=False)
    async def show_text(self, action: str, kind: str, namespace: str, name: str) -> None:
        try:
            if isinstance(self.stores[kind], RecordRows):
                body = record_text(action, kind, self.stores[kind].objects[name])
            elif action == "describe":
                body = await self.client.describe(kind, name, namespace)
            elif action == "yaml":
                body = await self.client.yaml(kind, name, namespace)
            elif action == "explain":
                body = await self.client.explain(name, namespace)
            else:
                body = await self.client.history(kind, name, namespace)
        except Exception as exc:
            self.notify(f"{action} failed: {exc}", severity="error")
            return
        self.push_screen(TextScreen(f"{action} {kind.lower()}/{name}", body))

    @work(group="act", exit_on_error=False)
    async def perform(self, action: str, kind: str, namespace: str, name: str, replicas: int = 0) -> None:
        client = self.client
        try:
            if action == "scale":
                result = await client.scale(name, namespace, replicas)
            elif action == "delete":
                result = await client.delete(kind, name, namespace)
            elif action in ("restart", "undo"):
                result = await client.rollout(action, name, namespace)
            elif action in ("cordon", "uncordon"):
                result = await client.cordon(name, action == "cordon")
            else:
                async for line in client.drain(name):  # the CLI's drain: it waits out maxUnavailable
                    self.notify(line)
                return
        except Exception as exc:
            self.notify(f"{action} {kind.lower()}/{name} failed: {exc}", severity="error")
            return
        self.notify(f"{kind.lower()}/{name}: {action} {result}")

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        await asyncio.sleep(0)
        if self.client is not None:
            try:
                await self.client.close()
            except Exception:
                pass


def record_text(action: str, kind: str, obj: dict) -> str:
    """Describe or YAML of an image or alert row: the read model already holds all there is."""
    if action == "yaml":
        return printers.to_yaml(obj)
    if kind == "Image":
        return cli_images.describe_text(obj)
    width = max(len(key) for key in obj) + 2
    return "\n".join(f"{key + ':':<{width}}{_flat(value)}" for key, value in obj.items())


def _flat(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return "-" if value is None else str(value)


async def _close_quietly(client: ConsoleClient) -> None:
    try:
        await asyncio.wait_for(client.close(), 2)
    except Exception:
        pass


def run(readonly: bool = False) -> int:
    ConsoleApp(readonly=readonly).run()
    return 0
