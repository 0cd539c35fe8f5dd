"""Loader: discovery, relation names, headers, templating, macros, sources, seeds, settings."""

from __future__ import annotations

import pytest

from sqlorch.config import load_target
from sqlorch.errors import ConfigError, SqlorchError, TemplateError
from sqlorch.project.loader import load_project
from sqlorch.project.seeds import read_seed
from sqlorch.refs import TableRef


def test_models_found_at_any_depth_and_named_by_first_folder(make_project):
    root = make_project(
        {
            "models/top.sql": "SELECT 1 AS a",
            "models/staging/orders.sql": "SELECT 1 AS a",
            "models/staging/deep/er/customers.sql": "SELECT 1 AS a",
            "models/marts/finance/q/daily.sql": "SELECT 1 AS a",
        }
    )
    project = load_project(root)
    assert set(project.models) == {
        TableRef("main", "top"),
        TableRef("staging", "orders"),
        TableRef("staging", "customers"),
        TableRef("marts", "daily"),
    }
    assert project.models[TableRef("staging", "customers")].path == root / "models/staging/deep/er/customers.sql"


def test_header_settings(make_project):
    root = make_project(
        {
            "models/m/a.sql": """
            -- materialized: view
            -- tags: core, finance
            -- unique_key: [id, Day]
            -- an ordinary comment
            SELECT 1 AS id, 2 AS day
        """,
            "models/m/b.sql": "SELECT 1 AS x",
        }
    )
    project = load_project(root)
    a = project.models[TableRef("m", "a")].config
    assert a.materialized == "view"
    assert a.tags == ("core", "finance")
    assert a.unique_key == ("id", "day")
    b = project.models[TableRef("m", "b")].config
    assert b.materialized == "incremental" and b.tags == () and b.unique_key == ()


def test_header_only_leading_block_counts(make_project):
    root = make_project({"models/m/a.sql": "SELECT 1 AS id\n-- materialized: view\n"})
    assert load_project(root).models[TableRef("m", "a")].config.materialized == "incremental"


def test_unknown_header_key_is_error_with_line_and_col(make_project):
    root = make_project({"models/m/a.sql": "-- tags: x\n--  materialised: view\nSELECT 1 AS a\n"})
    with pytest.raises(ConfigError) as info:
        load_project(root)
    text = info.value.render()
    assert f"{root / 'models/m/a.sql'}:2:5: error: unknown model setting 'materialised'" in text
    assert "did you mean 'materialized'?" in text


def test_bad_materialization_is_error(make_project):
    root = make_project({"models/m/a.sql": "-- materialized: tabel\nSELECT 1 AS a\n"})
    with pytest.raises(ConfigError, match="materialized must be one of"):
        load_project(root)


def test_var_from_settings_cli_and_default(make_project):
    root = make_project(
        {
            "sqlorch.yml": "vars:\n  days: 7\n  label: x\n",
            "models/m/a.sql": "SELECT {{ var('days') }} AS d, '{{ var('label') }}' AS l, {{ var('other', 3) }} AS o",
        }
    )
    sql = load_project(root).models[TableRef("m", "a")].sql
    assert "SELECT 7 AS d, 'x' AS l, 3 AS o" in sql
    sql = load_project(root, {"days": 30}).models[TableRef("m", "a")].sql
    assert "SELECT 30 AS d" in sql


def test_undefined_var_is_error(make_project):
    root = make_project({"models/m/a.sql": "SELECT {{ var('nope') }} AS d"})
    with pytest.raises(TemplateError, match="var 'nope' is not defined") as info:
        load_project(root)
    assert "a.sql" in info.value.render()


def test_env_var(make_project, monkeypatch):
    root = make_project(
        {"models/m/a.sql": "SELECT '{{ env_var('SQLORCH_T_X') }}' AS v, '{{ env_var('SQLORCH_T_Y', 'dflt') }}' AS w"}
    )
    monkeypatch.setenv("SQLORCH_T_X", "hello")
    monkeypatch.delenv("SQLORCH_T_Y", raising=False)
    assert "SELECT 'hello' AS v, 'dflt' AS w" in load_project(root).models[TableRef("m", "a")].sql


def test_unset_env_var_is_clear_error(make_project, monkeypatch):
    monkeypatch.delenv("SQLORCH_T_UNSET", raising=False)
    root = make_project({"models/m/a.sql": "SELECT '{{ env_var('SQLORCH_T_UNSET') }}' AS v"})
    with pytest.raises(TemplateError) as info:
        load_project(root)
    text = info.value.render()
    assert "environment variable 'SQLORCH_T_UNSET' is not set" in text
    assert str(root / "models/m/a.sql") in text


def test_macros(make_project):
    root = make_project(
        {
            "macros/money.sql": "{% macro cents(col) %}({{ col }} * 100){% endmacro %}",
            "models/m/a.sql": "SELECT {{ cents('amount') }} AS c FROM raw.t",
        }
    )
    assert "SELECT (amount * 100) AS c FROM raw.t" in load_project(root).models[TableRef("m", "a")].sql


def test_yaml_sources(make_project):
    root = make_project(
        {
            "models/sources.yml": """
            sources:
              raw.events: {cursor: _loaded_at, append_only: true}
              raw.customers:
                cursor: updated_at
                unique_key: Customer_Id
              raw.lineitem:
                unique_key: [l_orderkey, l_linenumber]
                columns:
                  l_orderkey: BIGINT
                  L_LINENUMBER: INT
        """,
            "models/m/a.sql": "SELECT * FROM raw.events",
        }
    )
    sources = load_project(root).sources
    events = sources[TableRef("raw", "events")]
    assert events.cursor == "_loaded_at" and events.append_only and events.columns is None
    customers = sources[TableRef("raw", "customers")]
    assert customers.cursor == "updated_at" and customers.unique_key == ("customer_id",)
    assert not customers.append_only
    lineitem = sources[TableRef("raw", "lineitem")]
    assert lineitem.unique_key == ("l_orderkey", "l_linenumber")
    assert lineitem.columns == {"l_orderkey": "BIGINT", "l_linenumber": "INT"}


def test_unknown_source_setting_is_error(make_project):
    root = make_project({"models/s.yml": "sources:\n  raw.e:\n    cursr: x\n"})
    with pytest.raises(ConfigError, match="unknown source setting 'cursr'") as info:
        load_project(root)
    assert (info.value.line, info.value.col) == (3, 5)  # the key itself
    assert info.value.hint is not None and "did you mean 'cursor'?" in info.value.hint


def test_append_only_without_cursor_is_error(make_project):
    root = make_project({"models/s.yml": "sources:\n  raw.e: {append_only: true}\n"})
    with pytest.raises(ConfigError, match="append_only but has no cursor"):
        load_project(root)


def test_seeds_and_seed_schema(make_project):
    files = {"seeds/people.csv": "id,name\n1,a\n", "models/m/a.sql": "SELECT * FROM seeds.people"}
    project = load_project(make_project(files))
    assert set(project.seeds) == {TableRef("seeds", "people")}
    assert project.models[TableRef("m", "a")].depends_on == {TableRef("seeds", "people")}


def test_project_settings(make_project):
    root = make_project(
        {
            "sqlorch.yml": "name: shop\ndialect: snowflake\nseed_schema: raw_seeds\nvars: {x: 1}\n",
            "seeds/people.csv": "id\n1\n",
            "models/a.sql": "SELECT id FROM people",
        }
    )
    project = load_project(root)
    assert project.settings.name == "shop"
    assert project.settings.dialect == "snowflake"
    assert project.settings.vars == {"x": 1}
    assert set(project.seeds) == {TableRef("raw_seeds", "people")}
    assert project.models[TableRef("main", "a")].depends_on == {TableRef("raw_seeds", "people")}


def test_default_project_name_is_folder(make_project):
    root = make_project({"models/a.sql": "SELECT 1 AS a"})
    assert load_project(root).settings.name == "project"


def test_unknown_project_setting_is_error(make_project):
    root = make_project({"sqlorch.yml": "nmae: x\n", "models/a.sql": "SELECT 1 AS a"})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_project(root)


def test_no_models_folder(tmp_path):
    with pytest.raises(SqlorchError, match="no models/ folder"):
        load_project(tmp_path)


def test_disabled_model_is_hidden(make_project):
    root = make_project({"models/m/a.sql": "-- enabled: false\nSELECT 1 AS a", "models/m/b.sql": "SELECT 1 AS b"})
    assert set(load_project(root).models) == {TableRef("m", "b")}


@pytest.mark.parametrize(
    ("relative", "what"),
    [
        ("models/s/true as c; delete from raw.customers; select true as c --.sql", "model file name"),
        ('models/s/we"ird.sql', "model file name"),
        ("models/s/my model.sql", "model file name"),
        ("models/s/1st.sql", "model file name"),
        ("models/s/größe.sql", "model file name"),
        ("models/my schema/a.sql", "schema folder name"),
        ("models/s/a.b.sql", "model file name"),
    ],
)
def test_model_file_names_must_be_plain_identifiers(make_project, relative, what):
    root = make_project({relative: "SELECT 1 AS a", "models/s/ok.sql": "SELECT 1 AS a"})
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert info.value.path == root / relative
    assert info.value.message.startswith(f"{what} ") and "is not a plain identifier" in info.value.message


def test_seed_file_name_must_be_plain_identifier(make_project):
    root = make_project({"seeds/my seed.csv": "id\n1\n", "models/s/a.sql": "SELECT 1 AS a"})
    with pytest.raises(ConfigError, match="seed file name 'my seed' is not a plain identifier"):
        load_project(root)


def test_model_file_encoding(make_project):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    (root / "models/s/a.sql").write_bytes(b"\xef\xbb\xbf-- tags: x\nSELECT 1 AS a")  # UTF-8 BOM: accepted
    assert load_project(root).models[TableRef("s", "a")].config.tags == ("x",)
    (root / "models/s/a.sql").write_bytes(b"-- caf\xe9\nSELECT 1 AS a")  # latin-1
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_project(root)
    assert (info.value.path, info.value.line, info.value.col) == (root / "models/s/a.sql", 1, 7)


@pytest.mark.parametrize(
    ("text", "line", "col", "fragment", "hint"),
    [
        ("name: x\ndialekt: duckdb\n", 2, 1, "unknown setting 'dialekt'", "did you mean 'dialect'?"),
        ("dialect: duckdbb\n", 1, 1, "unknown dialect 'duckdbb'", "duckdb"),
        ("vars: [1, 2]\n", 1, 1, "'vars' must be a mapping", None),
        ("default_schema: my schema\n", 1, 1, "'default_schema' must be a plain identifier", None),
    ],
)
def test_project_settings_errors(make_project, text, line, col, fragment, hint):
    root = make_project({"sqlorch.yml": text, "models/s/a.sql": "SELECT 1 AS a"})
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert (info.value.path, info.value.line, info.value.col) == (root / "sqlorch.yml", line, col)
    assert fragment in info.value.message
    assert hint is None or hint in (info.value.hint or "")


@pytest.mark.parametrize(
    ("text", "line", "col", "fragment", "hint"),
    [
        (
            "target: dev\ntargets:\n  dev:\n    type: duckdb\n    pth: x.duckdb\n",
            5,
            5,
            "unknown duckdb setting 'pth'",
            "did you mean 'path'?",
        ),
        (
            "target: dev\ntargets:\n  dev:\n    type: postgres\n    hots: db\n",
            5,
            5,
            "unknown postgres setting 'hots'",
            "did you mean 'host'?",
        ),
        (
            "target: dev\ntarget_s: {}\ntargets:\n  dev: {type: duckdb}\n",
            2,
            1,
            "unknown setting 'target_s'",
            "did you mean 'targets'?",
        ),
        ("target: dev\ntargets:\n  dev:\n    type: duckdbb\n", 4, 5, "has type 'duckdbb'", "did you mean 'duckdb'?"),
        ("target: prd\ntargets:\n  prod: {type: duckdb}\n", 1, 1, "unknown target 'prd'", "did you mean 'prod'?"),
    ],
)
def test_profiles_errors(make_project, text, line, col, fragment, hint):
    root = make_project({"profiles.yml": text, "models/s/a.sql": "SELECT 1 AS a"})
    with pytest.raises(ConfigError) as info:
        load_target(root, None, None)
    assert (info.value.path, info.value.line, info.value.col) == (root / "profiles.yml", line, col)
    assert fragment in info.value.message
    assert hint in (info.value.hint or "")


def test_snowflake_settings_pass_through(make_project):
    root = make_project({"profiles.yml": "targets:\n  sf: {type: snowflake, account: a, authenticator: x}\n"})
    assert load_target(root, None, None).type == "snowflake"


@pytest.mark.parametrize(
    ("settings", "line", "fragment"),
    [
        ("cursor: loaded_att\n    unique_key: id", 3, "cursor 'loaded_att' of source raw.orders"),
        ("cursor: loaded_at\n    unique_key: [id, line_no]", 4, "unique_key 'line_no' of source raw.orders"),
    ],
)
def test_source_settings_name_declared_columns(make_project, settings, line, fragment):
    text = f"sources:\n  raw.orders:\n    {settings}\n    columns: {{id: int, loaded_at: timestamp}}\n"
    root = make_project({"models/src.yml": text, "models/s/a.sql": "SELECT 1 AS a"})
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert (info.value.path, info.value.line, info.value.col) == (root / "models/src.yml", line, 5)
    assert fragment in info.value.message and "is not one of its columns" in info.value.message


def test_non_utf8_yaml(make_project):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    (root / "models/src.yml").write_bytes(b"sources:\n  raw.caf\xe9: {}\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_project(root)
    assert info.value.path == root / "models/src.yml"


def test_seed_and_macro_encodings(make_project):
    root = make_project({"models/s/a.sql": "SELECT id FROM seeds.people"})
    (root / "seeds").mkdir()
    (root / "seeds/people.csv").write_bytes(b"\xef\xbb\xbfid,name\n1,ada\n")  # BOM: accepted, not in the header
    project = load_project(root)
    assert read_seed(project.seeds[TableRef("seeds", "people")].path)[0] == {"id": "BIGINT", "name": "VARCHAR"}
    (root / "seeds/people.csv").write_bytes(b"id,name\n1,caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        read_seed(root / "seeds/people.csv")
    assert (info.value.line, info.value.col) == (2, 6)
    (root / "macros").mkdir()
    (root / "macros/m.sql").write_bytes(b"{% macro x() %}caf\xe9{% endmacro %}")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_project(root)
    assert info.value.path == root / "macros/m.sql"
