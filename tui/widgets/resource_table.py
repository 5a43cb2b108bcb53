"""The table of one view: changed in place by row key from a `Change`, never cleared for a live update."""

from __future__ import annotations

from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from dockyard.tui.rows import Change


REBUILD_ABOVE = 20


class ResourceTable(DataTable):
    """A DataTable that shows one page of rows and knows its columns by header."""

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.headers: list[str] = []

    def set_headers(self, headers: list[str]) -> None:
        """New columns (a new view, or wide toggled): the only time the table is rebuilt."""
        if headers == self.headers:
            return
        self.clear(columns=True)
        self.headers = list(headers)
        for header in headers:
            self.add_column(header, key=header)

    def apply(self, change: Change, rows: list[tuple[str, list[str]]] | None = None) -> None:
        """Apply a change; with `rows` (the page in order) when the order changed."""
        if rows is not None and (change.reordered or len(change.removed) > REBUILD_ABOVE):
            # a new filter, sort or page: one page (at most PAGE_SIZE rows) is built again, cheaper
            # than removing rows one by one; a live update never lands here unless the order changed
            self.clear()
            for key, cells in rows:
                self.add_row(*cells, key=key)
            return
        for key in change.removed:
            try:
                self.remove_row(key)
            except RowDoesNotExist:
                pass
        for key, cells in change.added:
            self.add_row(*cells, key=key)
        for key, cells in change.updated:
            for header, value in zip(self.headers, cells):
                try:
                    if self.get_cell(key, header) != value:
                        self.update_cell(key, header, value)
                except (CellDoesNotExist, RowDoesNotExist):
                    break

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (CellDoesNotExist, RowDoesNotExist):
            return None
