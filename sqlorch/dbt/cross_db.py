"""dbt's cross-database macros (``{{ dbt.date_trunc('month', 'ordered_at') }}``), built
as sqlglot expressions and printed in the project's dialect instead of dispatched to
adapter macros. Arguments are SQL fragments, as in dbt; a fragment that does not parse is
an error at the line that passed it."""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError

from sqlorch.errors import TemplateError


class CrossDatabase:
    """The ``dbt`` namespace: the cross-database macros projects commonly call."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def _sql(self, fragment: Any) -> exp.Expr:
        try:
            return sqlglot.parse_one(str(fragment), read=self.dialect)
        except SqlglotParseError as error:
            raise TemplateError(f"not a SQL expression: {str(fragment)!r} ({error.errors[0]['description']})") from None

    def _type(self, kind: Any) -> exp.DataType:
        try:
            return exp.DataType.build(str(kind), dialect=self.dialect)
        except (SqlglotParseError, ValueError):
            raise TemplateError(f"not a SQL type: {kind!r}") from None

    def _print(self, expression: exp.Expr) -> str:
        return expression.sql(dialect=self.dialect)

    def date_trunc(self, datepart: str, date: Any) -> str:
        return self._print(exp.DateTrunc(this=self._sql(date), unit=exp.var(str(datepart).upper())))

    def dateadd(self, datepart: str, interval: Any, from_date_or_timestamp: Any) -> str:
        unit = exp.var(str(datepart).upper())
        return self._print(
            exp.DateAdd(this=self._sql(from_date_or_timestamp), expression=self._sql(interval), unit=unit)
        )

    def datediff(self, first_date: Any, second_date: Any, datepart: str) -> str:
        unit = exp.var(str(datepart).upper())
        return self._print(exp.DateDiff(this=self._sql(second_date), expression=self._sql(first_date), unit=unit))

    def safe_cast(self, field: Any, type: Any) -> str:  # dbt's argument name
        return self._print(exp.TryCast(this=self._sql(field), to=self._type(type)))

    def cast(self, field: Any, type: Any) -> str:  # dbt's argument name
        return self._print(exp.Cast(this=self._sql(field), to=self._type(type)))

    def concat(self, fields: list[Any]) -> str:
        return self._print(exp.Concat(expressions=[self._sql(field) for field in fields]))

    def hash(self, field: Any) -> str:
        return self._print(exp.MD5(this=exp.Cast(this=self._sql(field), to=self._type("text"))))

    def split_part(self, string_text: Any, delimiter_text: Any, part_number: Any) -> str:
        args = [self._sql(string_text), self._sql(delimiter_text), self._sql(part_number)]
        return self._print(exp.Anonymous(this="SPLIT_PART", expressions=args))

    def type_string(self) -> str:
        return self._print(self._type("text"))

    def type_int(self) -> str:
        return self._print(self._type("int"))

    def type_bigint(self) -> str:
        return self._print(self._type("bigint"))

    def type_float(self) -> str:
        return self._print(self._type("double"))

    def type_numeric(self) -> str:
        return self._print(self._type("decimal(28, 6)"))

    def type_timestamp(self) -> str:
        return self._print(self._type("timestamp"))

    def type_boolean(self) -> str:
        return self._print(self._type("boolean"))
