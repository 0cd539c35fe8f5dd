"""``sqlorch test``: unit tests of models, and of their incremental behaviour, on embedded DuckDB."""
