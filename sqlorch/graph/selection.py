"""dbt's selector grammar: ``name``, ``+name``, ``name+``, ``+name+``, ``tag:x``, ``path:p``.

Several terms separated by spaces are a union; ``--exclude`` removes its own union.
"""

from __future__ import annotations

from pathlib import Path

from sqlorch.errors import GraphError
from sqlorch.graph.dag import DAG
from sqlorch.project.loader import Project
from sqlorch.refs import TableRef


def project_dag(project: Project) -> DAG[TableRef]:
    parents: dict[TableRef, set[TableRef]] = {ref: set() for ref in project.seeds}
    for ref, model in project.models.items():
        parents[ref] = set(model.depends_on)
    dag = DAG(parents)
    try:
        dag.topological_order()
    except GraphError:  # report it here, where the cycle can point at a model file
        cycle = dag.find_cycle()
        assert cycle is not None
        _raise_cycle(project, cycle)
    return dag


def _raise_cycle(project: Project, cycle: list[TableRef]) -> None:
    """The cycle ``[a, b, ..., a]`` (a feeds b), located where b reads a."""
    reader, read = project.models[cycle[1]], cycle[0]
    line = col = None
    for table in reader.tables:
        if table.name == read.name and table.schema in ("", read.schema):
            line, col = reader.locate_table(table)
            break
    raise GraphError(
        "dependency cycle: " + " -> ".join(str(node) for node in cycle), path=reader.path, line=line, col=col
    )


def _match_term(term: str, project: Project) -> set[TableRef]:
    if term.startswith("tag:"):
        tag = term[4:]
        return {ref for ref, model in project.models.items() if tag in model.config.tags}
    if term.startswith("path:"):
        wanted = (project.root / term[5:]).resolve()
        nodes = {**{r: m.path for r, m in project.models.items()}, **{r: s.path for r, s in project.seeds.items()}}
        return {ref for ref, path in nodes.items() if path.resolve() == wanted or wanted in path.resolve().parents}
    name = term.lower()
    candidates = project.node_refs()
    if "." in name:
        schema, _, bare = name.rpartition(".")
        return {ref for ref in candidates if ref.schema == schema and ref.name == bare}
    # a dbt model is selected by its file name too, which its alias may differ from
    files = {**{r: m.path for r, m in project.models.items()}, **{r: s.path for r, s in project.seeds.items()}}
    return {ref for ref in candidates if ref.name == name or files[ref].stem.lower() == name}


def _select_terms(expression: str, project: Project, dag: DAG[TableRef]) -> set[TableRef]:
    selected: set[TableRef] = set()
    for term in expression.split():
        upstream, downstream = term.startswith("+"), term.endswith("+")
        core = term.strip("+")
        matched = _match_term(core, project)
        if not matched:
            where = "path" if core.startswith("path:") else "tag" if core.startswith("tag:") else "model"
            raise GraphError(
                f"--select/--exclude term '{term}' matches no {where}",
                path=Path(project.root),
                hint="names are 'name' or 'schema.name'; `sqlorch ls` lists the models and seeds",
            )
        selected |= matched
        if upstream:
            selected |= dag.ancestors(matched)
        if downstream:
            selected |= dag.descendants(matched)
    return selected


def select_nodes(project: Project, dag: DAG[TableRef], select: str | None, exclude: str | None) -> set[TableRef]:
    chosen = _select_terms(select, project, dag) if select else dag.nodes
    if exclude:
        chosen -= _select_terms(exclude, project, dag)
    if not chosen and (select or exclude):
        raise GraphError(
            "--select/--exclude leave nothing selected",
            path=Path(project.root),
            hint="`sqlorch ls --select ... --exclude ...` shows what each selects",
        )
    return chosen
