"""The tables each model reads, keyed by the model's rendered SQL, kept between runs.

Finding a model's dependencies needs a parse; a project whose files did not change has
nothing new to parse. The key is a hash of the SQL after templating, the dialect and the
sqlglot release (another release may parse differently), so any edit, var or macro change
misses the cache. The file lives in ``target/cache/``; losing it only costs a parse.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import sqlglot

from sqlorch.refs import TableRef

_VERSION = "2"  # 2: entries only for models that pass the read-only check


class ParseCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list[list[str | None]]] = {}
        self.dirty = False
        try:
            data = json.loads(path.read_text())
            if data.get("version") == _VERSION and data.get("sqlglot") == sqlglot.__version__:
                self.entries = data["entries"]
        except (OSError, ValueError, KeyError, AttributeError):
            self.entries = {}

    @staticmethod
    def key(sql: str, dialect: str) -> str:
        return hashlib.sha256(f"{dialect}\0{sql}".encode()).hexdigest()

    def get(self, key: str) -> tuple[TableRef, ...] | None:
        found = self.entries.get(key)
        if found is None:
            return None
        return tuple(TableRef(schema=str(schema), name=str(name), catalog=catalog) for catalog, schema, name in found)

    def put(self, key: str, tables: tuple[TableRef, ...]) -> None:
        self.entries[key] = [[t.catalog, t.schema, t.name] for t in tables]
        self.dirty = True

    def save(self, keep: set[str]) -> None:
        """Write the entries of the current files only (``keep``), so the file never grows
        with every edit ever made."""
        if not self.dirty and keep == set(self.entries):
            return
        entries = {key: value for key, value in self.entries.items() if key in keep}
        payload = {"version": _VERSION, "sqlglot": sqlglot.__version__, "entries": entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(payload))
        except OSError:
            pass  # a read-only project still compiles; it only parses again next time
