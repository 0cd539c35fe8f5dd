"""Seed CSV files: header, rows and column types inferred the same way on every target."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlorch.config import read_utf8
from sqlorch.errors import ConfigError


def _parsers() -> list[tuple[str, Any]]:
    return [
        ("BIGINT", int),
        ("DOUBLE", float),
        ("DATE", date.fromisoformat),
        ("TIMESTAMP", datetime.fromisoformat),
        ("BOOLEAN", lambda v: {"true": True, "false": False}[v.lower()]),
    ]


def read_seed(path: Path) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    """Columns with types, and typed rows (empty cells are NULL)."""
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise ConfigError("seed file is empty: it needs a header row", path=path, line=1, col=1) from None
    raw = [row for row in reader if row]
    for number, row in enumerate(raw, start=2):
        if len(row) != len(header):
            raise ConfigError(f"row has {len(row)} fields, the header has {len(header)}", path=path, line=number, col=1)
    types: dict[str, str] = {}
    converters = []
    for index, name in enumerate(header):
        values = [row[index] for row in raw if row[index] != ""]
        for type_name, parse in _parsers():
            try:
                for value in values:
                    parse(value)
            except (ValueError, KeyError):
                continue
            types[name], converter = type_name, parse
            break
        else:
            types[name], converter = "VARCHAR", str
        converters.append(converter)
    rows = [
        tuple(None if value == "" else convert(value) for value, convert in zip(row, converters, strict=True))
        for row in raw
    ]
    return types, rows


def seed_fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]
