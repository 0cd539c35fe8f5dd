"""Graph: every reference form is an edge; ambiguity, duplicates and cycles are errors."""

from __future__ import annotations

import itertools

import pytest

from sqlorch.errors import ErrorGroup, GraphError, SqlorchError
from sqlorch.graph.selection import project_dag
from sqlorch.project.loader import load_project
from sqlorch.refs import TableRef

S = TableRef("s", "a")
B = TableRef("s", "b")
C = TableRef("t", "c")
BASE = {"models/s/a.sql": "SELECT 1 AS id", "models/s/b.sql": "SELECT 1 AS id", "models/t/c.sql": "SELECT 1 AS id"}


def deps(make_project, sql: str) -> tuple[set[TableRef], set[TableRef]]:
    project = load_project(make_project({**BASE, "models/x/m.sql": sql}))
    model = project.models[TableRef("x", "m")]
    return model.depends_on, model.sources


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT id FROM s.a", {S}),
        ("SELECT id FROM a", {S}),
        ("SELECT id FROM c", {C}),
        ("SELECT * FROM (SELECT id FROM s.a) AS q", {S}),
        ("SELECT a.id FROM s.a AS a JOIN s.b AS b ON a.id = b.id LEFT JOIN c ON c.id = a.id", {S, B, C}),
        ("SELECT id FROM s.a UNION ALL SELECT id FROM b", {S, B}),
        ("SELECT id FROM s.a INTERSECT SELECT id FROM s.b EXCEPT SELECT id FROM t.c", {S, B, C}),
        ("SELECT id FROM s.a AS x WHERE EXISTS (SELECT 1 FROM s.b AS y WHERE y.id = x.id)", {S, B}),
        ("SELECT id FROM s.a WHERE id IN (SELECT id FROM t.c)", {S, C}),
        ("SELECT id, (SELECT max(id) FROM s.b) AS m FROM s.a", {S, B}),
        ("WITH w AS (SELECT id FROM s.a) SELECT id FROM w", {S}),
        ("WITH w AS (SELECT id FROM s.a), v AS (SELECT id FROM w JOIN b USING (id)) SELECT id FROM v", {S, B}),
    ],
)
def test_reference_forms_are_edges(make_project, sql, expected):
    depends_on, sources = deps(make_project, sql)
    assert depends_on == expected
    assert sources == set()


def test_cte_named_like_a_model_is_not_an_edge(make_project):
    depends_on, sources = deps(make_project, "WITH b AS (SELECT 1 AS id) SELECT id FROM b")
    assert depends_on == set() and sources == set()
    depends_on, _ = deps(make_project, "WITH a AS (SELECT id FROM t.c) SELECT id FROM a")
    assert depends_on == {C}


def test_other_tables_are_sources(make_project):
    depends_on, sources = deps(
        make_project, "SELECT e.id FROM raw.events AS e JOIN s.a ON s.a.id = e.id JOIN lookup ON lookup.id = e.id"
    )
    assert depends_on == {S}
    assert sources == {TableRef("raw", "events"), TableRef("main", "lookup")}


def test_dag_edges(make_project):
    project = load_project(make_project({**BASE, "models/x/m.sql": "SELECT id FROM a UNION SELECT id FROM t.c"}))
    dag = project_dag(project)
    assert dag.parents[TableRef("x", "m")] == {S, C}
    order = dag.topological_order()
    assert order.index(S) < order.index(TableRef("x", "m"))
    assert dag.descendants([S]) == {TableRef("x", "m")}


def test_ambiguous_bare_name_names_both_candidates(make_project):
    root = make_project(
        {
            "models/s/orders.sql": "SELECT 1 AS id",
            "models/t/orders.sql": "SELECT 1 AS id",
            "models/x/m.sql": "SELECT id\nFROM   orders",
        }
    )
    with pytest.raises(GraphError) as info:
        load_project(root)
    text = info.value.render()
    assert "ambiguous" in text and "s.orders" in text and "t.orders" in text
    assert f"{root / 'models/x/m.sql'}:2:8" in text


def test_two_files_claim_one_relation(make_project):
    root = make_project(
        {
            "models/s/a.sql": "SELECT 1 AS id",
            "models/s/sub/a.sql": "SELECT 2 AS id",
        }
    )
    with pytest.raises(GraphError) as info:
        load_project(root)
    text = info.value.render()
    assert "two files claim the relation s.a" in text
    assert "models/s/a.sql" in text and "models/s/sub/a.sql" in text


def test_model_claiming_seed_relation(make_project):
    root = make_project({"seeds/people.csv": "id\n1\n", "models/seeds/people.sql": "SELECT 1 AS id"})
    with pytest.raises(GraphError, match=r"two files claim the relation seeds\.people"):
        load_project(root)


def test_cycle_prints_path(make_project):
    root = make_project(
        {
            "models/s/a.sql": "SELECT id FROM s.c",
            "models/s/b.sql": "SELECT id FROM s.a",
            "models/s/c.sql": "SELECT id FROM s.b",
            "models/s/d.sql": "SELECT id FROM s.c",
        }
    )
    with pytest.raises(GraphError) as info:
        project_dag(load_project(root))
    assert info.value.path is not None and str(info.value.path).startswith(str(root / "models/s"))
    message = info.value.message
    assert message.startswith("dependency cycle: ")
    path = message.removeprefix("dependency cycle: ").split(" -> ")
    assert path[0] == path[-1] and sorted(path[:-1]) == ["s.a", "s.b", "s.c"]
    for left, right in itertools.pairwise(path):
        assert (left, right) in {("s.a", "s.b"), ("s.b", "s.c"), ("s.c", "s.a")}  # reads-into order


def test_self_reference_is_error(make_project):
    with pytest.raises(GraphError, match="reads itself"):
        load_project(make_project({"models/s/a.sql": "SELECT id FROM s.a"}))


def test_all_load_errors_are_reported(make_project):
    root = make_project(
        {
            "models/s/a.sql": "SELEC 1",
            "models/s/b.sql": "-- bogus: 1\nSELECT 1 AS id",
        }
    )
    with pytest.raises(SqlorchError) as info:
        load_project(root)
    assert isinstance(info.value, ErrorGroup)
    text = info.value.render()
    assert "a.sql" in text and "b.sql" in text
