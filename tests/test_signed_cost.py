"""The cost model prices folding signed deltas by the change, not by the affected share of
the inputs (planning/cost.py, ``Estimate.folds``): a one-row aggregate over a large input,
which every change "affects" whole, stays incremental when it folds deltas."""

from __future__ import annotations

from sqlorch.planning.cost import FULL, INCREMENTAL, Estimate, estimate_costs

# TPC-H Q6 at sf 1: 6M lineitems, one RF1+RF2 step changes ~24k, one output row.
ONE_ROW = Estimate(changed_rows=24_000, input_rows=6_000_000, table_rows=1, distinct_keys=1)


def test_a_one_row_aggregate_recomputed_from_its_inputs_is_rebuilt() -> None:
    assert estimate_costs(ONE_ROW, []).winner == FULL


def test_a_one_row_aggregate_folding_signed_deltas_stays_incremental() -> None:
    costs = estimate_costs(Estimate(**{**ONE_ROW.__dict__, "folds": True}), [])
    assert costs.winner == INCREMENTAL
    assert costs.incremental_work.rows_read < ONE_ROW.input_rows // 10


# TPC-H Q15 at sf 1: the change folded into 10,000 kept supplier groups, the model recomputed
# from them and the 10,000 suppliers it reads whole (``Estimate.kept``)
Q15 = Estimate(
    changed_rows=24_000,
    input_rows=6_010_000,
    table_rows=1,
    distinct_keys=1,
    joined_rows=10_000,
    kept=True,
    kept_rows=10_000,
)


def test_a_model_recomputed_from_kept_groups_stays_incremental() -> None:
    costs = estimate_costs(Q15, [])
    assert costs.winner == INCREMENTAL
    assert costs.incremental_work.rows_read < 100_000 and costs.full_work.rows_read > 6_000_000


def test_kept_groups_as_many_as_the_input_rows_or_not_built_are_rebuilt() -> None:
    """Groups about as many as the rows they sum save nothing; groups not built yet are built
    from every input row: the rebuild, which writes them too, wins."""
    as_many = Estimate(**{**Q15.__dict__, "kept_rows": 6_000_000, "joined_rows": 6_000_000, "table_rows": 6_000_000})
    assert estimate_costs(as_many, []).winner == FULL
    assert estimate_costs(Estimate(**{**Q15.__dict__, "builds_state": True, "kept_rows": None}), []).winner == FULL
