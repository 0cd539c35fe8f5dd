"""A model's fingerprint (its normalised SQL and settings: a change rebuilds it) is kept in
the compile cache by the SQL text it comes from (``CompileCache.fingerprint``): a build reads
it instead of generating every model's SQL again, and any edit of the text or the settings
still gives the model a new fingerprint, while whitespace and comments do not."""

from __future__ import annotations

from pathlib import Path

import duckdb

from sqlorch import api
from sqlorch.api import Options
from tests.conftest import write_files


def _decision(project: Path) -> tuple[str, str]:
    (step,) = [s for s in api.plan(Options(project_dir=project)).steps if str(s.ref) == "marts.m"]
    return step.action, step.reason


def test_the_cached_fingerprint_follows_every_edit(tmp_path: Path) -> None:
    project = write_files(tmp_path, {"models/marts/m.sql": "SELECT id, v FROM raw.src\n", "models/sources.yml": ""})
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw; CREATE TABLE raw.src AS SELECT range AS id, range AS v FROM range(3)")
    model = project / "models" / "marts" / "m.sql"
    api.build(Options(project_dir=project))
    assert _decision(project) == ("skip", "model and inputs unchanged")
    model.write_text("-- a comment\nSELECT id,   v\nFROM raw.src\n")
    assert _decision(project) == ("skip", "model and inputs unchanged")
    model.write_text("SELECT id, v + 1 AS v FROM raw.src\n")
    assert _decision(project) == ("full", "model SQL or settings changed")
    api.build(Options(project_dir=project))
    assert _decision(project) == ("skip", "model and inputs unchanged")
    model.write_text("-- materialized: table\nSELECT id, v + 1 AS v FROM raw.src\n")
    assert _decision(project) == ("full", "model SQL or settings changed")
