"""Which is cheaper for one model, its incremental form or a full rebuild: both in seconds.

Pure: estimates and the model's run history in, two costs and the winner out.

**Work.** A run is priced by the rows it reads and writes, plus a fixed cost per run
(statements, a transaction). With ``I`` the rows of the model's inputs, ``T`` the rows of
its table, ``c`` the changed input rows (old and new images) and ``f`` the share of the
table's keys those rows affect:

- full rebuild: reads ``I`` (and ``T`` when the old rows are diffed for consumers: the
  table exists and a model reads it), writes ``T`` (and the diff, the ``2 d`` old and new
  images of the rows that differ, to the change log);
- incremental: reads ``c``, the affected share ``f I`` of the inputs it recomputes, and
  scans the inputs' and the table's key columns to find the affected rows (``SCAN_SHARE``
  of a row each); copies the stored rows of the affected keys (``f T``) aside and diffs them
  with the recomputed ones (``COPY_SHARE`` of a row each: bulk statements, ``2 f T`` written
  and ``2 f T`` read); writes ``4 d`` for the ``d`` rows that differ (old and new images to
  the change log, the stored rows deleted and the recomputed ones inserted). Without EXCEPT
  ALL (Snowflake, BigQuery) nothing is diffed: ``d`` is ``f T``, no copies. Where no model
  reads the change log (``logged`` false) the keys' rows are recomputed aside, deleted and
  inserted, ``3 f T`` rows at ``COPY_SHARE``, with no copy, diff or log; folding signed
  deltas recomputes no key: it reads ``c``, scans its group state (``D`` rows) and its table
  twice each (the touched groups' states read and replaced, the table's rows of those groups
  read and merged), and writes ``4 f T`` likewise.

**Rows that differ.** ``d`` is ``f T`` at most, and about one row per changed record:
where a key holds one row (a group, a unique key) each affected key's row differs, ``f T``
is about the changed records and the two agree; where a key holds many rows (a window's
partition) a changed input row changes its own output rows and those its window reaches,
not the whole partition. ``d = min(f T, r)`` is the estimate that favours the incremental
form, as for unknown ``D``; a model's own runs correct its rate where its windows reach
further (a frame over the whole partition). Counting ``4 f T`` at the incremental rate for
every form priced ``marts.sessions`` of the events benchmark (10M events, 200,000 users;
10,000 appended events hit 9,748 users, 493,000 of its 9.86M rows) at 4.6 s against 3.0 s
for a rebuild: 1.97M of the 3.07M rows it was priced for were writes, of which the diffed
form wrote 10,090; it ran in 1.3 to 1.5 s, the rebuild in 9.6 to 12.5 s (load 5 to 7). Its
copies and diff are bulk statements: 1.5 CPU s for those 493,000 rows' ``4 f T``, 0.25 of
the incremental rate (``COPY_SHARE``). No model reads ``marts.sessions``: its unlogged form
(1.7 s at load 10) is now priced 2.2 s against 3.0 s.

``f`` comes from the table's distinct keys ``D``: ``r`` changed rows falling at random on
``D`` keys hit ``D (1 - (1 - 1/D)^r)`` of them, where ``r`` is ``c / 2`` (an update logs
an old and a new image, mostly of one key) unless the change only appends. Unknown ``D``
counts the key as unique (``D = T``), the estimate that favours the incremental form. An
unknown ``I`` (no statistics yet) chooses no rebuild: the cost rule needs sizes.

**Group state.** Folding signed deltas keeps each group's state in ``_sqlorch.agg__<model>``;
where that state does not match the model's last batch (its first fold, or a rebuild or
another strategy ran since) the fold first builds it from every input row: it reads ``I``
and writes one row per group (``D``), one ``CREATE TABLE AS`` priced at a rebuild's rate.
Its later folds need no rebuild of it. The fold is chosen only where it is not dearer by
``MIN_SAVING`` than replacing the affected keys (``Costs.folds``), its state current or not:
a few changed rows of a table of as many groups as input rows (per customer and day) replace
their keys, which scans the inputs once where the fold scans a state as large twice (twenty
rows of 3,000,000: 0.63 s folded against 0.26 to 0.47 s replaced, the model's time in
builds at a load of 3 to 4); a change of many rows of large groups folds, building the state
once if it must.

**Kept groups.** A model recomputed from the groups it keeps of its aggregated derived
tables (``rewrites/kept_aggregates.py``, ``Estimate.kept``) folds the change into them, at
the incremental rate: it reads ``c``, scans the ``G`` kept groups twice (the touched ones read
and replaced) and writes the touched groups and the rows that differ; then it recomputes the
model from every group and the inputs it reads whole (``J``, ``joined_rows``) and diffs the
recomputed rows with its table, bulk statements priced at a rebuild's rate: ``G + J + 3 T``
read, ``2 T`` written. Groups not built yet are built from every input row, as the fold's
state. Its rebuild writes the groups too, so it reads the kept tables' inputs twice. TPC-H
Q15 at sf 1: 24,000 changed rows, 10,000 groups, 10,000 suppliers, one row: about 0.07 s
against 1.8 s for the rebuild; groups as many as their input rows price it above the rebuild.

**Window tails.** A window chain extended at its partitions' ends (``rewrites/window_tails.py``,
``Estimate.tails``) recomputes no partition whole where the change only appends: it reads the
change three times (the partitions sorted, the new rows, their windows), the ``P`` tails
(one per partition, ``tail_rows``; unknown: the table's keys) scanned twice and one per
touched partition run through the windows; the input and the table scanned once each to find
the replaced partitions' rows and the appended partitions' stored groups; then it writes as
replacing the keys does, but only the touched groups: at most two per changed row (its own
and the stored one it folds into), not every row of the touched partitions. Tails not current
are first built from every input row (``I`` read, ``P`` written, at a rebuild's rate), and a
rebuild writes them too (the windows run over its input twice: ``I`` more read, ``P`` more
written). It is chosen only where it is not dearer by ``MIN_SAVING`` than replacing the keys
(``Costs.tails``). The events benchmark's sessions (10M events, 200,000 users, 10,000 appended
events on 9,700 users) read ~530,000 events through the windows replacing keys, ~20,000
extending tails. Pricing the touched partitions' rows instead (~240 sessions a user at 50M
events) put the break-even at 30,888 changed rows of 49.5M: a delta of 49,457 events rebuilt
the sessions in 57 s where extending the tails takes a few.

**An input rebuilt in this build.** A model rebuilt in full copies and diffs its old rows
only for readers that stay incremental; when every reader rebuilds too, it does not. That
diff (``upstream_diff``: three reads or writes of the input's table) is the incremental
reader's cost, so it is added to the reader's incremental form: three aggregates of a few
hundred groups each folding a change of every customer of 300,000 orders kept the rebuilds
of two 300,000-row inputs diffing (2.0 s of the build's 6.1 s of statements), where their
own rebuilds cost 0.05 s each.

**Prior.** With no history the rates of ``PRIOR`` apply, read off the runs of
bench/cost_model.py on DuckDB on a shared 2-core machine (300,000 orders, a dozen models,
one thread): a rebuilt row (read or written) about ``1.5e-7`` s, a row of the
incremental form (joined with the affected keys, found with NULL-safe matches, diffed and
written twice) ``3e-7`` to ``1.5e-6`` s (a projection to a join), priced at the dear end:
a change of a tenth of the keys is where the two forms meet, and a model's own runs move
it; a row scanned only to find the affected keys' rows about ``SCAN_SHARE`` of that: the
keyed statements scan the table and the inputs about twice each (twenty changed rows of
3,000,000: 0.1 to 0.3 s a model, measured in-process at a load of 2 to 9 on two cores).
A rebuild's fixed cost is higher (it copies the old rows aside, diffs, counts and logs:
about ten statements against the incremental form's seven), so on a table of a few
thousand rows, where rows cost next to nothing, the incremental form wins, and keeps its
consumers' change logs small.

**Learning.** Each model run records its seconds and the rows the plan estimated it
reads and writes (``state/history.py``). A run's seconds per row are its seconds beyond the
fixed cost over its rows, with the prior counted as a run of ``PRIOR_ROWS`` rows at the
prior's rate: runs of a few rows (where the seconds are all fixed cost) barely move it,
large runs settle it. The fixed cost stays the prior's. The calibration is per model and
per strategy, on the user's own warehouse; until a model has run both ways, the form
without runs is scaled as the other's runs corrected it (``learned_rates``).

**Damping.** Runs are timed on a machine that may be busy (other builds, a test suite on
the same cores): one run three times slower than the rest must not flip a model to a
rebuild, nor a first build on a loaded machine make every later change look cheap or
dear. So a strategy's rate is learned only from ``MIN_RUNS`` runs of it on (before that
the prior applies, scaled by the other form's learned correction where this form never
ran), and it is the median of its
recent runs' rates (``history.KEEP`` of them), not their pooled mean: a slow run moves the
choice only when most recent runs were slow too.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from sqlorch.state.history import RunCost

FULL = "full"
INCREMENTAL = "incremental"
# A rebuild must save this much, or as much as it costs itself where that is less, to be
# chosen: below it the two are within the noise of the runs the rates are learned from (tens
# of ms on a busy machine). The second half keeps a small model from staying incremental at
# four times the cost of its rebuild only because both are under MIN_SAVING.
MIN_SAVING = 0.1  # seconds
SCAN_SHARE = 0.03  # a row scanned to find the affected keys' rows, against a row recomputed
COPY_SHARE = 0.25  # a stored or recomputed row of the affected keys copied aside and diffed, likewise


@dataclass(frozen=True)
class Rate:
    """Seconds per run and per row read or written."""

    fixed: float
    per_row: float

    def seconds(self, rows_read: int, rows_written: int) -> float:
        return self.fixed + self.per_row * (rows_read + rows_written)


PRIOR_ROWS = 100_000  # the weight of the prior against a model's runs, in rows
PRIOR = {FULL: Rate(fixed=0.015, per_row=1.5e-7), INCREMENTAL: Rate(fixed=0.01, per_row=1.5e-6)}


@dataclass(frozen=True)
class Estimate:
    """What the plan knows of one model's next run."""

    changed_rows: int  # input rows changed, old and new images
    input_rows: int | None  # rows of every input (what a rebuild reads); None: unknown
    table_rows: int | None  # rows of the model's table now; None: unknown
    distinct_keys: int | None  # distinct output keys in the table; None: unknown
    diffs: bool = True  # a rebuild diffs its old and new rows for its consumers
    # a model reads the change log: the keyed form logs old and new images (else it replaces
    # the keys' rows unlogged: ``replace_keys._replace_unread``)
    logged: bool = True
    appends_only: bool = False  # the changed rows are new rows only, no old images
    scans: bool = True  # the incremental form finds affected rows by key (not: new or mapped rows inserted)
    joined_rows: int = 0  # rows of the unchanged inputs the new or mapped rows are joined to (scanned once)
    # the incremental form folds signed deltas (``rewrites/signed_aggregates.py``): it reads the
    # change and scans the inputs only for the rows joining it, and recomputes no group
    folds: bool = False
    builds_state: bool = False  # the fold first builds its group state from every input row
    # rows an input rebuilt in this build reads, copies and diffs only so that this model can
    # stay incremental (``upstream_diff``): priced into the incremental form at a rebuild's rate
    upstream_diff_rows: int = 0
    # the incremental form recomputes the model from the groups it keeps of its aggregated
    # derived tables (``rewrites/kept_aggregates.py``): ``kept_rows`` groups (None: unknown,
    # built from the inputs), ``joined_rows`` the rows of the inputs it reads whole
    kept: bool = False
    kept_rows: int | None = None
    # the incremental form extends window partitions at their ends (``rewrites/window_tails.py``):
    # ``tail_rows`` tails kept (None: unknown, as many as the table's keys)
    tails: bool = False
    tail_rows: int | None = None

    @property
    def changed_records(self) -> int:
        """Rows whose keys the change can move: an update is an old and a new image."""
        return self.changed_rows if self.appends_only else (self.changed_rows + 1) // 2


@dataclass(frozen=True)
class Work:
    rows_read: int
    rows_written: int


def logged_rows(estimate: Estimate, keys: int) -> int:
    """Rows either form puts in the change log: old and new images of the rows that differ
    (a rebuild's diff finds the same), or the appended rows."""
    return estimate.changed_rows if not estimate.scans else 2 * differing_rows(estimate, keys)


@dataclass(frozen=True)
class Costs:
    incremental: float  # seconds
    full: float  # seconds
    winner: str  # FULL or INCREMENTAL
    affected_keys: int
    incremental_work: Work
    full_work: Work
    logged_rows: int
    folds: bool = False  # the incremental form priced folds signed deltas (else it replaces keys)
    tails: bool = False  # the incremental form priced extends window tails (else it replaces keys)

    def incremental_form(self) -> Costs:
        """These costs where a rebuild is not the question (a plan branch of its own decides
        it): the incremental form they chose, never a rebuild."""
        return replace(self, winner=INCREMENTAL)

    def reason(self) -> str:
        return f"full rebuild estimated cheaper: {self.full:.3g} s vs {self.incremental:.3g} s incremental"


def affected_keys(changed_rows: int, distinct_keys: int | None, table_rows: int | None) -> int:
    """Expected keys hit by ``changed_rows`` rows falling at random on the table's keys."""
    keys = distinct_keys or table_rows
    if not keys:
        return changed_rows
    return min(keys, changed_rows, round(keys * (1 - (1 - 1 / keys) ** changed_rows)))


def _share(estimate: Estimate, keys: int) -> float:
    total = estimate.distinct_keys or estimate.table_rows
    return min(1.0, keys / total) if total else 1.0


def affected_rows(estimate: Estimate, keys: int) -> int:
    """Stored rows of the affected keys (as many are recomputed)."""
    return round(_share(estimate, keys) * estimate.table_rows) if estimate.table_rows else keys


def differing_rows(estimate: Estimate, keys: int) -> int:
    """Rows of the affected keys whose recomputed rows differ from the stored ones: what the
    change log and the table are written (see "Rows that differ"); without a diff (no EXCEPT
    ALL) every row of the keys."""
    affected = affected_rows(estimate, keys)
    return min(affected, estimate.changed_records) if estimate.diffs else affected


def incremental_work(estimate: Estimate, keys: int) -> Work:
    if not estimate.scans:  # new or mapped rows: the changed rows (and what they join) read, written twice
        return Work(estimate.changed_rows + estimate.joined_rows, 2 * estimate.changed_rows)
    inputs, table = estimate.input_rows or 0, estimate.table_rows or 0
    if estimate.folds:  # the group state and the table, each scanned twice: no input
        groups = estimate.distinct_keys or table
        scanned = round(SCAN_SHARE * 2 * (groups + table))
        return Work(estimate.changed_rows + scanned, 4 * affected_rows(estimate, keys))
    scanned = round(SCAN_SHARE * (inputs + table))
    recomputed = round(_share(estimate, keys) * inputs)
    if estimate.tails:  # the change and one tail a touched partition through the windows, the tails scanned
        partitions = estimate.tail_rows if estimate.tail_rows is not None else estimate.distinct_keys or table
        scanned = round(SCAN_SHARE * (2 * partitions + inputs + 2 * table))
        recomputed = 2 * estimate.changed_rows + keys
    read = estimate.changed_rows + recomputed + scanned
    affected = affected_rows(estimate, keys)
    if estimate.tails:  # only the touched groups rewritten: a changed row's own and the stored one it joins
        affected = min(affected, 2 * estimate.changed_rows)
    if not estimate.logged:  # the keys' rows recomputed aside, deleted and inserted: bulk, no log
        return Work(read, round(COPY_SHARE * 3 * affected))
    if not estimate.diffs:  # no EXCEPT ALL: every row of the keys logged and replaced
        return Work(read, 4 * affected)
    copied = round(COPY_SHARE * 2 * affected)  # written aside, then read by the diff
    return Work(read + copied, copied + 4 * differing_rows(estimate, keys))


def full_work(estimate: Estimate, keys: int) -> Work:
    inputs = estimate.input_rows or 0
    # a table never built yet (or of unknown size) holds about as many rows as it reads
    table = estimate.table_rows if estimate.table_rows is not None else inputs
    diff = min(2 * differing_rows(estimate, keys), 2 * table) if estimate.diffs else 0
    work = Work(inputs + (table if estimate.diffs else 0), table + diff)
    if estimate.kept:  # a rebuild writes the kept groups too: their inputs read again
        groups = estimate.kept_rows or 0
        work = Work(work.rows_read + max(0, inputs - estimate.joined_rows), work.rows_written + groups)
    if estimate.tails:  # and the window tails: the windows run over every input row again
        partitions = estimate.tail_rows if estimate.tail_rows is not None else estimate.distinct_keys or table
        work = Work(work.rows_read + inputs, work.rows_written + partitions)
    return work


def upstream_diff(table_rows: int) -> int:
    """Rows an input model rebuilt in full handles to diff its old and new rows for a reader
    that stays incremental: its old table read and copied aside, then read again beside the
    new one (``rebuild.py``). Without such readers the rebuild skips it (``planner``). Each
    incremental reader is charged the whole diff: where two share it, it is counted twice,
    which errs towards rebuilding readers that would otherwise keep it alive."""
    return 3 * table_rows


def state_work(estimate: Estimate) -> Work:
    """Building a fold's group state: every input row read, a row per group written (window
    tails: a row per partition)."""
    if not ((estimate.folds or estimate.kept or estimate.tails) and estimate.builds_state):
        return Work(0, 0)
    if estimate.tails:
        partitions = estimate.tail_rows if estimate.tail_rows is not None else estimate.distinct_keys
        return Work(estimate.input_rows or 0, partitions or estimate.table_rows or 0)
    groups = estimate.distinct_keys or estimate.table_rows or estimate.input_rows or 0
    if estimate.kept:
        groups = estimate.kept_rows if estimate.kept_rows is not None else estimate.input_rows or 0
    return Work(estimate.input_rows or 0, groups)


def kept_work(estimate: Estimate) -> tuple[Work, Work]:
    """Recomputing from kept groups: the part that follows the change, at the incremental
    rate (the change read, the groups scanned twice for the touched ones, those replaced, the
    rows that differ logged and replaced), and the bulk part, at a rebuild's rate (the model
    recomputed from every group and the inputs it reads whole, its table read three times:
    the keys, the stored rows copied aside, the diff; the copies written)."""
    groups = estimate.kept_rows if estimate.kept_rows is not None else estimate.input_rows or 0
    table = estimate.table_rows or 0
    touched = affected_keys(estimate.changed_records, groups, groups) if groups else 0
    differ = min(table, estimate.changed_records) if estimate.diffs else table
    change = Work(estimate.changed_rows + round(SCAN_SHARE * 2 * groups), 2 * touched + 4 * differ)
    return change, Work(groups + estimate.joined_rows + 3 * table, 2 * table)


MIN_RUNS = 3  # runs of a strategy before its learned rate replaces the prior (see Damping)


def run_rate(prior: Rate, run: RunCost) -> float:
    """One run's seconds per row, the prior counted as a run of ``PRIOR_ROWS`` rows."""
    seconds = max(0.0, run.seconds - prior.fixed)
    return (PRIOR_ROWS * prior.per_row + seconds) / (PRIOR_ROWS + run.rows_read + run.rows_written)


def learned_rate(strategy: str, history: list[RunCost]) -> Rate | None:
    """The median of this model's recent ``strategy`` runs' rates; None under ``MIN_RUNS`` runs."""
    prior = PRIOR[strategy]
    runs = [run for run in history if run.strategy == strategy]
    if len(runs) < MIN_RUNS:
        return None
    return Rate(prior.fixed, statistics.median(run_rate(prior, run) for run in runs))


def learned_rates(history: list[RunCost]) -> dict[str, Rate]:
    """Both forms' rates. Where the model has learned the rate of one form and has no run of
    the other (its first builds, before any incremental run) the other form's prior is scaled
    as that form's was corrected: what the runs say of the warehouse's speed (a slower
    machine, a busy one, threads sharing it) holds for both forms, and correcting one alone
    would tilt every choice towards the other. A form with a run or two keeps its prior:
    those runs, too few to learn from, would contradict the scaling."""
    learned = {strategy: learned_rate(strategy, history) for strategy in PRIOR}
    known = [(strategy, rate) for strategy, rate in learned.items() if rate is not None]
    factor = known[0][1].per_row / PRIOR[known[0][0]].per_row if len(known) == 1 else 1.0
    ran = {run.strategy for run in history}
    rates: dict[str, Rate] = {}
    for strategy, rate in learned.items():
        prior = PRIOR[strategy]
        rates[strategy] = rate or (prior if strategy in ran else Rate(prior.fixed, prior.per_row * factor))
    return rates


def _with_state(
    estimate: Estimate, keys: int, rates: dict[str, Rate], incremental: Work, cost: float, form: str
) -> tuple[bool, Work, float]:
    """An incremental form that keeps state (``form``: the estimate's flag, ``folds`` or
    ``tails``), priced with building its state where it is not current (its rows at a
    rebuild's rate: no fixed cost, one statement of the run); declined, for replacing the
    keys, where that is cheaper by ``MIN_SAVING``. Whether it is kept, its work and cost."""
    incremental_rate, full_rate = rates[INCREMENTAL], rates[FULL]
    state = state_work(estimate)
    cost += full_rate.per_row * (state.rows_read + state.rows_written)
    replacing = incremental_work(replace(estimate, **{form: False}), keys)
    replacing_cost = incremental_rate.seconds(replacing.rows_read, replacing.rows_written)
    if replacing_cost + MIN_SAVING < cost:
        return False, replacing, replacing_cost
    return True, Work(incremental.rows_read + state.rows_read, incremental.rows_written + state.rows_written), cost


def estimate_costs(estimate: Estimate, history: list[RunCost]) -> Costs:
    """Both costs and the cheaper form: a rebuild wins when it saves ``MIN_SAVING`` (or its
    own cost, if less); a closer call goes to the incremental form, whose small change log
    keeps the model's consumers incremental too."""
    keys = affected_keys(estimate.changed_records, estimate.distinct_keys, estimate.table_rows)
    rates = learned_rates(history)
    incremental_rate, full_rate = rates[INCREMENTAL], rates[FULL]
    incremental, full = incremental_work(estimate, keys), full_work(estimate, keys)
    incremental_cost = incremental_rate.seconds(incremental.rows_read, incremental.rows_written)
    folds, tails = estimate.folds, estimate.tails
    if folds or tails:  # never both: each is a strategy of its own
        form = "folds" if folds else "tails"
        kept, incremental, incremental_cost = _with_state(estimate, keys, rates, incremental, incremental_cost, form)
        folds, tails = folds and kept, tails and kept
    if estimate.kept:
        change, bulk = kept_work(estimate)
        state = state_work(estimate)
        incremental = Work(
            change.rows_read + bulk.rows_read + state.rows_read,
            change.rows_written + bulk.rows_written + state.rows_written,
        )
        incremental_cost = incremental_rate.seconds(change.rows_read, change.rows_written)
        incremental_cost += full_rate.per_row * (bulk.rows_read + bulk.rows_written + state.rows_read)
        incremental_cost += full_rate.per_row * state.rows_written
    incremental_cost += full_rate.per_row * estimate.upstream_diff_rows
    full_cost = full_rate.seconds(full.rows_read, full.rows_written)
    cheaper = full_cost + min(MIN_SAVING, full_cost) < incremental_cost
    winner = FULL if estimate.input_rows is not None and cheaper else INCREMENTAL
    logged = logged_rows(estimate, keys)
    return Costs(incremental_cost, full_cost, winner, keys, incremental, full, logged, folds, tails)


def break_even(estimate: Estimate, history: list[RunCost]) -> int | None:
    """The changed rows above which a rebuild wins, the rest of ``estimate`` held: the
    threshold of a plan's ``rebuild_cheaper`` rule, checked at build time against the rows
    an upstream step of the same build really changed. None: a rebuild never wins."""

    def rebuild_wins(changed: int) -> bool:
        return estimate_costs(replace(estimate, changed_rows=changed), history).winner == FULL

    high = 4 * ((estimate.input_rows or 0) + (estimate.table_rows or 0)) + 2
    if estimate.input_rows is None or not rebuild_wins(high):
        return None
    low = -1  # rebuild_wins(low + 1 ...) is searched: the first count that wins is ``high``
    while high - low > 1:
        middle = (low + high) // 2
        if rebuild_wins(middle):
            high = middle
        else:
            low = middle
    return high - 1  # "more than this many" wins
