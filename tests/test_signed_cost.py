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
