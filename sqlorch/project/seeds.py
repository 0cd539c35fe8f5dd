"""Seed CSV files: header, rows and column types inferred the same way on every target."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError

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


def _converter(kind: exp.DataType) -> Callable[[str], Any]:
    """How a cell becomes a value of a declared column type (dbt's ``column_types``)."""
    if kind.this in exp.DataType.INTEGER_TYPES:
        return int
    if kind.this in (exp.DataType.Type.DECIMAL, exp.DataType.Type.BIGDECIMAL):
        return Decimal
    if kind.this in exp.DataType.REAL_TYPES:
        return float
    if kind.this == exp.DataType.Type.DATE:
        return date.fromisoformat
    if kind.this in exp.DataType.TEMPORAL_TYPES:
        return datetime.fromisoformat
    if kind.this == exp.DataType.Type.BOOLEAN:
        return lambda v: {"true": True, "false": False}[v.lower()]
    return str


def read_seed(
    path: Path,
    delimiter: str = ",",
    column_types: dict[str, str] | None = None,
) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    """Columns with types, and typed rows (empty cells are NULL). ``column_types`` fixes
    the type of the columns it names (the others are inferred). Names are lower-cased and
    always quoted when created (so dbt's ``quote_columns`` changes nothing here)."""
    declared: dict[str, exp.DataType] = {}
    for name, kind in (column_types or {}).items():
        try:
            declared[name.lower()] = exp.DataType.build(kind)
        except (SqlglotParseError, ValueError):
            raise ConfigError(f"seed column '{name}': unknown type '{kind}'", path=path) from None
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter=delimiter)
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
        if name in declared:
            types[name] = declared[name].sql()
            converters.append(_converter(declared[name]))
            continue
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
    try:
        rows = [
            tuple(None if value == "" else convert(value) for value, convert in zip(row, converters, strict=True))
            for row in raw
        ]
    except (ValueError, KeyError, ArithmeticError) as error:
        raise ConfigError(f"a value does not fit its declared column type: {error}", path=path) from None
    return types, rows


def seed_fingerprint(path: Path, settings: str = "") -> str:
    """The file's content, and the settings that change how it loads (none by default, so
    a seed without settings keeps the fingerprint it always had)."""
    digest = hashlib.sha256(path.read_bytes())
    if settings:
        digest.update(b"\0" + settings.encode())
    return digest.hexdigest()[:32]
