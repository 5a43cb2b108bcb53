"""The table of one view: changed in place by row key from a `Change`, never cleared for a live update."""

from __future__ import annotations

from collections.abc import Iterable

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, CellKey, RowDoesNotExist, RowKey

from dockyard.tui.rows import Change


REBUILD_ABOVE = 20


def _cell(value: str | Text) -> Text:
    """Cells are plain text: a `[` in a label or an annotation is not Rich markup (and is not parsed)."""
    return value if isinstance(value, Text) else Text(str(value), no_wrap=True, end="")


class ResourceTable(DataTable):
    """A DataTable that shows one page of rows and knows its columns by header.

    Every cell is one line of plain text, so column widths are the cells' lengths: measured here from
    the strings instead of by rendering each cell, and a cell is drawn as one padded segment rather than
    through Rich's layout: both were most of the cost of a redraw in DataTable.
    """

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
                    if self.get_cell(key, header).plain != value:
                        self.update_cell(key, header, value, update_width=True)  # "firing" -> "resolved"
                except (CellDoesNotExist, RowDoesNotExist):
                    break

    def add_row(self, *cells, **kwargs):
        return super().add_row(*map(_cell, cells), **kwargs)

    def update_cell(self, row_key, column_key, value, *, update_width: bool = False) -> None:
        super().update_cell(row_key, column_key, _cell(value), update_width=update_width)

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (CellDoesNotExist, RowDoesNotExist):
            return None

    # ------------------------------------------------------------ widths from the strings

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        columns = self.ordered_columns
        for row_key in new_rows:
            data = self._data.get(row_key)
            if data is None:  # removed before the table went idle
                continue
            for column in columns:
                value = data.get(column.key)
                if value is not None:
                    column.content_width = max(column.content_width, value.cell_len, column.label.cell_len)
        super()._update_dimensions(())  # the virtual size, from the widths

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        for column_key in {column_key for _, column_key in updated_cells}:
            column = self.columns.get(column_key)
            if column is not None:
                column.content_width = max([column.label.cell_len] + [
                    row[column_key].cell_len for row in self._data.values() if column_key in row])

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False):
        if row_index < 0 or column_index < 0 or row_index < self.fixed_rows or column_index < self.fixed_columns:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor, self._update_count,
                     self._pseudo_class_state)  # DataTable's own key, so its invalidation holds
        lines = self._cell_render_cache.get(cache_key)
        if lines is None:
            cell = self._data[row_key].get(column_key)
            text = cell.plain.split("\n", 1)[0] if cell is not None else ""
            component_style, post_style = self._get_styles_to_render_cell(
                False, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor,
                self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
            style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
            pad = " " * self.cell_padding
            line = set_cell_size(pad + set_cell_size(text, max(0, width - 2 * self.cell_padding)) + pad, width)
            lines = [[Segment(line, style + post_style)]]
            self._cell_render_cache[cache_key] = lines
        return lines
