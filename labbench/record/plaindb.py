"""The ledger's door for text: every row written through a `LedgerDatabase` loses terminal
escape sequences, whatever table it goes to and whoever wrote it (a launcher's coloured
warning in a failed run's error, say), so the journal, the reports and Datasette show plain
text. Raw SQL (`db.execute`) is not filtered; the ledger's code writes numbers that way."""

from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NoTable, Table

from labbench.core.formatting import without_escapes


def plain_row(row: Any) -> Any:
    """A row (a dict) with its text values stripped of escapes; anything else as it is."""
    if not isinstance(row, dict):
        return row
    return {k: without_escapes(v) if isinstance(v, str) else v for k, v in row.items()}


class _PlainTable(Table):
    def insert_all(self, records: Iterable, *args: Any, **kwargs: Any) -> Table:
        return super().insert_all((plain_row(row) for row in records), *args, **kwargs)

    def update(
        self, pk_values: Any, updates: dict | None = None, *args: Any, **kwargs: Any
    ) -> Table:
        return super().update(pk_values, plain_row(updates or {}), *args, **kwargs)


class LedgerDatabase(Database):
    """A sqlite-utils Database whose tables write plain text (see the module docstring)."""

    def table(self, table_name: str, **kwargs: Any) -> Table:
        if table_name in self.view_names():
            raise NoTable(f"Table {table_name} is actually a view")
        kwargs.setdefault("strict", self.strict)
        return _PlainTable(self, table_name, **kwargs)
