"""The exact incremental strategies, cheapest first: the planner takes the first that
applies to a model and the changes at hand (``planner.decide_model``), after its own rules
for a full rebuild (``rebuild.py``). Like sqlglot's ``RULES``, the order is the design.

| strategy | applies when |
|---|---|
| insert new rows | row-preserving model, one input only appended to, transactions |
| map changed rows | row-preserving model keyed by its FROM table's identity, that input changed, transactions |
| add partial aggregates | COUNT/SUM/MIN/MAX per group, one input only appended to, transactions |
| fold signed deltas | COUNT/SUM/AVG/MIN/MAX groups, any change but a whole one (partitioned: anchored), transactions |
| recompute from kept groups | a changed input read in a subquery expression and in aggregated CTEs kept, transactions |
| extend windows at partition ends | lag/running SUM/COUNT windows under a GROUP BY of their partition, transactions |
| recompute all | a global aggregate (no key columns: one row) |
| merge keys | the key is unique and the target runs MERGE in a transaction |
| delete+insert keys | always (the key holds several rows, or no MERGE in a transaction) |

A row-level model whose changed inputs are read in subquery expressions through one partition
key (TPC-H Q20) merges or deletes+inserts the output keys of its rows in the touched
partitions now and before the change (``signed_statements.partition_key_statements``).

Appending and folding are exact only if applied once: they need a transaction that commits
them with the watermark. Without one, replacing keys is idempotent.
"""

from __future__ import annotations

from sqlorch.adapters.base import Capabilities
from sqlorch.analysis.keys import KeyAnalysis
from sqlorch.planning.rewrites.insert_new_rows import insert_only_statements
from sqlorch.planning.rewrites.kept_aggregates import kept_statements
from sqlorch.planning.rewrites.map_changed_rows import map_statements
from sqlorch.planning.rewrites.model_statements import (
    ModelContext,
    Resolve,
    Strategy,
    covered,
    mentions,
    partitioned_form,
    partitioned_keys,
    single_appended_input,
    single_changed_input,
)
from sqlorch.planning.rewrites.replace_keys import incremental_statements
from sqlorch.planning.rewrites.window_tails import tail_statements
from sqlorch.planning.steps import (
    DELETE_INSERT_KEYS,
    INSERT_ONLY,
    KEPT_GROUPS,
    MAP_CHANGES,
    MERGE_KEYS,
    PARTIAL_AGGREGATES,
    RECOMPUTE_ALL,
    SIGNED_DELTAS,
    WINDOW_TAILS,
    InputChange,
    Item,
)
from sqlorch.refs import TableRef

Changes = dict[TableRef, InputChange]


def insert_only(keys: KeyAnalysis, changes: Changes, capabilities: Capabilities) -> bool:
    """New output rows are exactly a row-preserving model over the appended input rows."""
    return capabilities.transactions and keys.row_preserving and single_appended_input(keys, changes)


def map_changes(keys: KeyAnalysis, changes: Changes, capabilities: Capabilities) -> bool:
    """A row-preserving model changes as its one changed input's images mapped through it
    (``map_changed_rows.py``): where its key is unique (declared), or where the changed input
    is the table whose identity keys the model's rows (``KeyAnalysis.identity_table``)."""
    return (
        capabilities.transactions
        and capabilities.except_all
        and capabilities.row_counts
        and capabilities.read_own_writes
        and keys.row_preserving
        and bool(keys.key)
        and single_changed_input(keys, changes)
        and (keys.unique or _reads_identity_table(keys, changes))
    )


def _reads_identity_table(keys: KeyAnalysis, changes: Changes) -> bool:
    """The changed input is the table whose identity keys the model."""
    return keys.identity_table is not None and all(mentions({keys.identity_table}, ref) for ref in changes)


def partial_aggregates(keys: KeyAnalysis, changes: Changes, capabilities: Capabilities) -> bool:
    """COUNT/SUM/MIN/MAX of appended rows fold into the stored groups."""
    return capabilities.transactions and keys.distributive is not None and single_appended_input(keys, changes)


def signed_form(keys: KeyAnalysis, changes: Changes) -> bool:
    """The model's groups follow these changes from signed deltas: its query (or its
    decorrelated form) has the form, or one partition (``analysis/partition.py``) anchors
    every changed input."""
    return keys.not_signed == "" or covered(keys.partitions, changes)


def keyed_statements(ctx: ModelContext, changes: Changes, resolve: Resolve) -> list[Item]:
    if partitioned_keys(ctx.compiled.keys, changes):
        # imported here: the signed strategy's module builds on this package
        from sqlorch.planning.rewrites.signed_statements import partition_key_statements

        return partition_key_statements(ctx, changes, resolve)
    return incremental_statements(ctx, changes, resolve)


def signed_deltas(keys: KeyAnalysis, changes: Changes, capabilities: Capabilities) -> bool:
    """COUNT/SUM/AVG/MIN/MAX groups updated by the weighted change of their inputs, inserts,
    updates and deletes alike (``analysis/signed_shape.py``). The state it keeps must commit
    with the model, so like the other folding strategies it needs transactions."""
    return (
        capabilities.transactions and signed_form(keys, changes) and not any(change.full for change in changes.values())
    )


def kept_groups(keys: KeyAnalysis, changes: Changes, capabilities: Capabilities) -> bool:
    """A model that reads a changed input in a subquery expression no other form follows
    (TPC-H Q15's MAX over its CTE) and reads some changed input only inside aggregated derived
    tables it keeps as group state (``analysis/kept_aggregates.py``): the change is folded into
    the groups and the model recomputed from them. Other changed inputs are read as they are
    now. Its state commits with the model: transactions, as the other folds."""
    return (
        capabilities.transactions
        and bool(keys.kept)
        and keys.key is not None
        and not any(change.full for change in changes.values())
        and any(mentions(keys.subquery_tables, ref) for ref in changes)
        and any(mentions(keys.kept_tables, ref) for ref in changes)
    )


def window_tails(keys: KeyAnalysis, changes: Changes, capabilities: Capabilities) -> bool:
    """A window chain under a GROUP BY (``analysis/window_tails.py``) keyed by its windows'
    partition, its one input changed: partitions that only gained rows past their ends are
    extended from their tails, the others replaced (``rewrites/window_tails.py``). The tails
    commit with the model: transactions, as the folds. It rewrites the touched groups, not whole
    keys: not where the model's change log must hold whole keys (``KeyAnalysis.whole_key_log``)."""
    tails = keys.tails
    return (
        capabilities.transactions
        and tails is not None
        and not keys.whole_key_log
        and keys.key == list(tails.partition_outputs)
        and single_changed_input(keys, changes)
        and all(mentions({tails.table}, ref) for ref in changes)
    )


def _signed_reason(names: str, keys: KeyAnalysis, changes: Changes) -> str:
    how = "groups maintained from signed deltas (state in _sqlorch)"
    if partitioned_form(keys, changes):
        how += "; per touched partition, its rows now less its rows before the change"
    return f"{names} changed; {how}"


def signed_delta_statements(ctx: ModelContext, changes: Changes, resolve: Resolve) -> list[Item]:
    # imported here: the signed strategy's module builds on this package
    from sqlorch.planning.rewrites.signed_statements import signed_statements

    return signed_statements(ctx, changes, resolve, ctx.aggregate_state)


def fold_statements(ctx: ModelContext, changes: Changes, resolve: Resolve) -> list[Item]:
    return incremental_statements(ctx, changes, resolve, fold_appends=True)


def _affected_keys(names: str, keys: KeyAnalysis, changes: Changes) -> str:
    read_inside = any(mentions(keys.subquery_tables, ref) for ref in changes)  # as the planner asks it
    how = "; of the touched partitions' rows now and before" if keys.row_partitions and read_inside else ""
    return f"{names} changed; recompute affected keys{how}"  # the key: Step.key


STRATEGIES: tuple[Strategy, ...] = (
    Strategy(
        INSERT_ONLY,
        insert_only,
        lambda names, keys, changes: f"{names} appended rows; the model keeps rows one for one",
        insert_only_statements,
    ),
    Strategy(
        MAP_CHANGES,
        map_changes,
        lambda names, keys, changes: f"{names} changed; its changed rows mapped through the model",
        map_statements,
    ),
    Strategy(
        PARTIAL_AGGREGATES,
        partial_aggregates,
        lambda names, keys, changes: f"{names} appended rows; COUNT/SUM/MIN/MAX folded into groups",
        fold_statements,
    ),
    Strategy(
        SIGNED_DELTAS,
        signed_deltas,
        _signed_reason,
        signed_delta_statements,
    ),
    Strategy(
        KEPT_GROUPS,
        kept_groups,
        lambda names, keys, changes: (
            f"{names} changed; groups of its aggregated subqueries kept in _sqlorch, the model recomputed from them"
        ),
        kept_statements,
    ),
    Strategy(
        WINDOW_TAILS,
        window_tails,
        lambda names, keys, changes: (
            f"{names} changed; partitions that only gained rows at their end extended from their tails "
            "(state in _sqlorch), the others' keys recomputed"
        ),
        tail_statements,
    ),
    Strategy(
        RECOMPUTE_ALL,
        lambda keys, changes, capabilities: not keys.key,
        lambda names, keys, changes: f"{names} changed; one-row aggregate recomputed",
        incremental_statements,
    ),
    Strategy(
        MERGE_KEYS,
        lambda keys, changes, capabilities: keys.unique and capabilities.merge_in_transaction,
        _affected_keys,
        keyed_statements,
    ),
    Strategy(DELETE_INSERT_KEYS, lambda keys, changes, capabilities: True, _affected_keys, keyed_statements),
)
STRATEGY = {strategy.name: strategy for strategy in STRATEGIES}
