"""``sqlorch test``: unit tests in a project's tests/*.yml, run on embedded DuckDB."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO, Run, assert_error, write_files


def _demo(root: Path) -> Path:
    for folder in ("models", "seeds"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "tests").mkdir()
    for spec in (REPO / "tests").glob("*.yml"):
        shutil.copy(spec, root / "tests" / spec.name)
    return root


def test_demo_unit_tests_pass_including_the_incremental_one(tmp_path: Path, cli: Callable[..., Run]) -> None:
    project = _demo(tmp_path / "demo")
    run = cli("test", "--project-dir", project)
    assert run.exit_code == 0, run.output
    assert "done: 3 passed, 0 failed" in run.output
    assert "second build: incremental" in run.output  # the change went through the incremental path
    assert not (project / "warehouse.duckdb").exists()  # no warehouse of the project was touched


def test_a_failing_unit_test_prints_a_row_level_diff(tmp_path: Path, cli: Callable[..., Run]) -> None:
    project = _demo(tmp_path / "demo")
    write_files(
        project,
        {
            "tests/failing.yml": """
                tests:
                  - name: wrong revenue
                    model: marts.daily_revenue
                    given:
                      intermediate.int_orders_enriched:
                        - {order_id: 1, order_date: 2024-03-01, status: completed, amount: 10, country: UK}
                    expect:
                      - {order_date: 2024-03-01, country: UK, revenue: 11}
                  - name: wrong after the change
                    model: marts.customer_orders
                    given:
                      intermediate.int_orders_enriched:
                        - {order_id: 1, customer_id: 7, order_date: 2024-03-01, status: completed, amount: 10}
                    change:
                      intermediate.int_orders_enriched:
                        delete:
                          - {order_id: 1, customer_id: 7, order_date: 2024-03-01, status: completed, amount: 10}
                    expect:
                      - {customer_id: 7, order_id: 1, order_number: 1}
            """
        },
    )
    run = cli("test", "--project-dir", project)
    assert run.exit_code == 1, run.output
    assert "done: 3 passed, 2 failed" in run.output
    assert "fail  marts.daily_revenue: wrong revenue" in run.output
    assert "- order_date=datetime.date(2024, 3, 1), country='UK', revenue=Decimal('11.00')" in run.output
    assert "+ order_date=datetime.date(2024, 3, 1), country='UK', revenue=Decimal('10.00')" in run.output
    assert "fail  marts.customer_orders: wrong after the change (second build: incremental" in run.output
    assert "- customer_id=7, order_id=1, order_number=1" in run.output


def test_a_snowflake_model_is_unit_tested_on_duckdb(tmp_path: Path, cli: Callable[..., Run]) -> None:
    project = write_files(
        tmp_path / "snow",
        {
            "sqlorch.yml": "dialect: snowflake\n",
            "models/sources.yml": """
                sources:
                  raw.orders: {unique_key: id}
            """,
            "models/marts/due.sql": """
                SELECT id, DATEADD(day, 30, placed) AS due, IFF(amount > 100, 'big', 'small') AS size,
                       ZEROIFNULL(amount)::NUMBER(10, 2) AS amount
                FROM raw.orders
                QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY placed DESC) = 1
            """,
            "tests/due.yml": """
                tests:
                  - name: due dates and sizes
                    model: marts.due
                    given:
                      raw.orders:
                        - {id: 1, placed: 2024-01-01, amount: 150, status: open}
                        - {id: 2, placed: 2024-01-10}
                    change:
                      raw.orders:
                        insert: [{id: 3, placed: 2024-02-01, amount: 5}]
                    expect:
                      - {id: 1, due: 2024-01-31, size: big, amount: 150}
                      - {id: 2, due: 2024-02-09, size: small, amount: 0}
                      - {id: 3, due: 2024-03-02, size: small, amount: 5}
            """,
        },
    )
    run = cli("test", "--project-dir", project)
    assert run.exit_code == 0, run.output
    assert "pass  marts.due: due dates and sizes" in run.output


def test_a_snowflake_model_with_declared_columns_is_unit_tested(tmp_path: Path, cli: Callable[..., Run]) -> None:
    """Declared source columns, a seed and an upstream model, all known in lower case, are
    read by Snowflake SQL whose unquoted names fold to upper case there."""
    project = write_files(
        tmp_path / "snow",
        {
            "sqlorch.yml": "dialect: snowflake\n",
            "seeds/sizes.csv": "code,label\nB,big\nS,small\n",
            "models/sources.yml": """
                sources:
                  raw.orders:
                    unique_key: id
                    columns: {id: NUMBER, Placed: DATE, amount: "NUMBER(10, 2)"}
            """,
            "models/staging/orders.sql": """
                SELECT ID, DATEADD(day, 30, PLACED) AS Due, IFF(Amount > 100, 'B', 'S') AS size_code
                FROM raw.orders
            """,
            "models/marts/due.sql": """
                SELECT O.Id, O.DUE, S."LABEL" AS size
                FROM staging.orders AS O JOIN seeds.sizes AS S ON S.Code = O.size_code
            """,
            "tests/due.yml": """
                tests:
                  - name: sized
                    model: staging.orders
                    given:
                      raw.orders:
                        - {id: 1, placed: 2024-01-01, amount: 150}
                        - {id: 2, placed: 2024-01-10, amount: 5}
                    expect:
                      - {id: 1, due: 2024-01-31, size_code: B}
                      - {id: 2, due: 2024-02-09, size_code: S}
                  - name: labelled
                    model: marts.due
                    given:
                      staging.orders: [{id: 1, due: 2024-01-31, size_code: B}]
                      seeds.sizes: [{code: B, label: big}]
                    expect:
                      - {id: 1, due: 2024-01-31, size: big}
            """,
        },
    )
    compiled = cli("compile", "--project-dir", project)
    assert compiled.exit_code == 0, compiled.output
    run = cli("test", "--project-dir", project)
    assert run.exit_code == 0, run.output
    assert "pass  staging.orders: sized" in run.output
    assert "pass  marts.due: labelled" in run.output


def test_compile_checks_unit_test_files(tmp_path: Path, cli: Callable[..., Run]) -> None:
    project = _demo(tmp_path / "demo")
    bad = project / "tests" / "bad.yml"
    cases = {
        "tests:\n  - name: x\n    model: marts.nothing\n    expect: []\n": (
            "bad.yml:3:12: error: unknown model 'marts.nothing'",
        ),
        "tests:\n  - name: x\n    model: marts.daily_revenue\n    expect:\n      - {day: 1}\n": (
            "bad.yml:5:9: error: unknown column 'day' of marts.daily_revenue",
        ),
        "tests:\n  - name: x\n    model: marts.daily_revenue\n    given:\n      seeds.orders: []\n    expect: []\n": (
            "bad.yml:5:7: error: seeds.orders is not an input of marts.daily_revenue",
        ),
        "tests:\n  - name: x\n    model: [\n": ("bad.yml:4:1: error: invalid YAML",),
    }
    for text, fragments in cases.items():
        bad.write_text(text)
        assert_error(cli("compile", "--project-dir", project), *fragments)


def test_an_edited_unit_test_file_is_compiled_again(tmp_path: Path, cli: Callable[..., Run]) -> None:
    project = _demo(tmp_path / "demo")
    assert cli("compile", "--project-dir", project).exit_code == 0
    (project / "tests" / "bad.yml").write_text("tests:\n  - name: x\n    model: marts.nothing\n    expect: []\n")
    assert_error(cli("compile", "--project-dir", project), "bad.yml:3:12: error: unknown model 'marts.nothing'")
