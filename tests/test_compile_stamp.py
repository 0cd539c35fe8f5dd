"""A compile whose inputs did not change returns at once; any change to what it reads runs it."""

from __future__ import annotations

import json
import os

from tests.conftest import assert_error
from tests.test_compile import GOOD

UNCHANGED = "nothing changed since the last compile"


def compiled(root, name: str = "staging/orders.sql") -> str:
    return (root / "target" / "compiled" / name).read_text()


def test_second_compile_is_skipped_until_a_file_changes(make_project, cli):
    root = make_project(GOOD)
    first = cli("compile", "--project-dir", root)
    assert first.exit_code == 0 and UNCHANGED not in first.output, first.output
    second = cli("compile", "--project-dir", root)
    assert second.exit_code == 0 and UNCHANGED in second.output, second.output
    model = root / "models/staging/orders.sql"
    model.write_text("SELECT order_id, customer_id, amount, amount * 2 AS doubled FROM raw.orders")
    third = cli("compile", "--project-dir", root)
    assert third.exit_code == 0 and UNCHANGED not in third.output, third.output
    assert "doubled" in compiled(root)


def test_options_and_missing_outputs_run_it_again(make_project, cli):
    root = make_project(GOOD)
    assert cli("compile", "--project-dir", root).exit_code == 0
    selected = cli("compile", "--project-dir", root, "--select", "orders")
    assert UNCHANGED not in selected.output, selected.output
    (root / "target/compiled/staging/orders.sql").unlink()
    again = cli("compile", "--project-dir", root, "--select", "orders")
    assert UNCHANGED not in again.output and "order_id" in compiled(root), again.output


def test_an_env_var_read_by_a_template_is_part_of_the_stamp(make_project, cli, monkeypatch):
    monkeypatch.setenv("SQLORCH_TEST_MIN_AMOUNT", "5")
    files = {**GOOD, "models/staging/orders.sql": (
        "SELECT order_id, customer_id, amount FROM raw.orders WHERE amount > {{ env_var('SQLORCH_TEST_MIN_AMOUNT') }}"
    )}  # fmt: skip
    root = make_project(files)
    assert cli("compile", "--project-dir", root).exit_code == 0
    assert UNCHANGED in cli("compile", "--project-dir", root).output
    monkeypatch.setenv("SQLORCH_TEST_MIN_AMOUNT", "7")
    changed = cli("compile", "--project-dir", root)
    assert UNCHANGED not in changed.output and "> 7" in compiled(root), changed.output
    stamp = (root / "target/cache/compile_stamp.json").read_text()
    assert "SQLORCH_TEST_MIN_AMOUNT" in stamp and '"7"' not in stamp  # the name, never the value


def test_a_failed_compile_leaves_no_stamp_to_hide_its_errors(make_project, cli):
    root = make_project(GOOD)
    assert cli("compile", "--project-dir", root).exit_code == 0
    model = root / "models/staging/orders.sql"
    model.write_text("SELECT order_id, nope FROM raw.orders")
    os.utime(model)
    for _ in range(2):
        assert_error(cli("compile", "--project-dir", root), "nope")


def test_the_stamp_lists_the_env_vars_of_its_own_compile_only(tmp_path, cli, monkeypatch):
    """Two projects compiled in one process: the second's stamp does not carry the first's
    variables (the names are collected per compile, not for the life of the process)."""
    from tests.conftest import write_files

    monkeypatch.setenv("SQLORCH_TEST_FIRST_ONLY", "5")
    reading = write_files(tmp_path / "a", {"models/s/a.sql": "SELECT {{ env_var('SQLORCH_TEST_FIRST_ONLY') }} AS v"})
    plain = write_files(tmp_path / "b", {"models/s/b.sql": "SELECT 1 AS v"})
    for root in (reading, plain):
        assert cli("compile", "--project-dir", root).exit_code == 0
    assert json.loads((reading / "target/cache/compile_stamp.json").read_text())["env"] == ["SQLORCH_TEST_FIRST_ONLY"]
    assert json.loads((plain / "target/cache/compile_stamp.json").read_text())["env"] == []
    assert cli("docs", "--project-dir", reading).exit_code == 0
    assert cli("docs", "--project-dir", plain).exit_code == 0
    assert json.loads((reading / "target/cache/docs.json").read_text())["env"] == ["SQLORCH_TEST_FIRST_ONLY"]
    assert json.loads((plain / "target/cache/docs.json").read_text())["env"] == []
