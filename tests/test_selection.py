"""Selection grammar: name, schema.name, +/- graph operators, tag:, path:, unions, --exclude."""

from __future__ import annotations

import json

import pytest

from sqlorch.errors import GraphError
from sqlorch.graph.selection import project_dag, select_nodes
from sqlorch.project.loader import load_project
from tests.conftest import assert_error

FILES = {
    "seeds/raw_people.csv": "id\n1\n",
    "models/staging/people.sql": "-- tags: core\nSELECT id FROM seeds.raw_people",
    "models/staging/orders.sql": "SELECT 1 AS id, 2 AS person_id",
    "models/intermediate/joined.sql": "-- tags: core, finance\n"
    "SELECT o.id FROM staging.orders AS o JOIN people AS p ON p.id = o.person_id",
    "models/marts/report.sql": "SELECT id FROM intermediate.joined",
    "models/marts/other.sql": "-- tags: finance\nSELECT 1 AS id",
}


@pytest.fixture
def select(make_project):
    project = load_project(make_project(FILES))
    dag = project_dag(project)

    def run(expr: str | None, exclude: str | None = None) -> set[str]:
        return {str(ref) for ref in select_nodes(project, dag, expr, exclude)}

    return run


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("joined", {"intermediate.joined"}),
        ("intermediate.joined", {"intermediate.joined"}),
        ("joined+", {"intermediate.joined", "marts.report"}),
        ("+joined", {"intermediate.joined", "staging.people", "staging.orders", "seeds.raw_people"}),
        ("+joined+", {"intermediate.joined", "staging.people", "staging.orders", "seeds.raw_people", "marts.report"}),
        ("people+", {"staging.people", "intermediate.joined", "marts.report"}),
        ("tag:core", {"staging.people", "intermediate.joined"}),
        ("tag:finance", {"intermediate.joined", "marts.other"}),
        ("path:models/staging", {"staging.people", "staging.orders"}),
        ("path:models/marts/report.sql", {"marts.report"}),
        ("path:seeds", {"seeds.raw_people"}),
        ("report other", {"marts.report", "marts.other"}),
        ("tag:finance staging.orders", {"intermediate.joined", "marts.other", "staging.orders"}),
    ],
)
def test_select(select, expr, expected):
    assert select(expr) == expected


def test_no_select_is_everything(select):
    assert len(select(None)) == 6


def test_exclude(select):
    assert select("+report", "seeds.raw_people") == {
        "marts.report",
        "intermediate.joined",
        "staging.people",
        "staging.orders",
    }
    assert select(None, "tag:finance path:models/staging") == {"seeds.raw_people", "marts.report"}
    assert select("joined+", "joined") == {"marts.report"}


@pytest.mark.parametrize("term", ["nope", "marts.joined", "tag:nope", "path:models/nope", "+nope+"])
def test_unknown_term_is_error(select, term):
    with pytest.raises(GraphError, match="matches no"):
        select(term)


def test_cli_select_limits_compile(make_project, cli):
    root = make_project(FILES)
    run = cli("compile", "--project-dir", root, "--select", "report")
    assert run.exit_code == 0, run.output


def test_cli_unknown_model_in_select(make_project, cli):
    root = make_project(FILES)
    assert_error(cli("compile", "--project-dir", root, "--select", "nope"), "'nope' matches no model")
    assert_error(cli("build", "--project-dir", root, "--select", "staging.nope+"), "matches no model")


def test_cli_build_select_and_exclude(make_project, cli):
    root = make_project(FILES)
    assert cli("build", "--project-dir", root).exit_code == 0
    run = cli("build", "--project-dir", root, "--select", "+joined", "--exclude", "staging.orders")
    assert run.exit_code == 0, run.output
    results = json.loads((root / "target/run_results.json").read_text())["results"]
    assert {r["model"] for r in results} == {"seeds.raw_people", "staging.people", "intermediate.joined"}
