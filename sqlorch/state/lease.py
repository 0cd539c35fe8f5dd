"""One writer per target: a lease row in ``_sqlorch.lease`` that ``build`` and ``run`` take.

DuckDB's file lock only covers DuckDB; on Postgres, Snowflake and BigQuery two builds
would otherwise apply the same batch twice. The table holds exactly one row, created with
it by one ``CREATE TABLE IF NOT EXISTS ... AS SELECT`` (so no warehouse ever needs to
enforce a primary key: Snowflake and BigQuery do not). Every change after that is a
conditional ``UPDATE`` whose affected-row count says who won: taking a free lease
(``owner IS NULL``), taking over a dead holder's (``owner = its token AND beat = the beat
seen``), renewing one's own (``owner = mine``). Each warehouse serialises UPDATEs of one
row (a row lock on Postgres, a table lock on Snowflake, a conflict error on DuckDB and
BigQuery), so at most one of two racing processes sees a count of 1.

Expiry needs no shared clock: the holder bumps ``beat`` every ``expiry / 6`` seconds, and a
waiter that sees the same ``(owner, beat)`` for ``expiry`` seconds of its own monotonic
clock takes the lease over. A holder on this host whose pid is gone is taken over at once.
A holder that cannot renew (its row was taken over after a long pause, or the warehouse is
unreachable for ``expiry`` seconds) calls ``on_lost``, which stops its build: it must not
write once another process may.

A lease held by this very process (``run`` holds it, and the ``build`` inside takes it
again) is granted without a second heartbeat: the outer holder renews and releases it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Adapter, Interrupts
from sqlorch.errors import LockError, SqlorchError
from sqlorch.state.store import STATE_SCHEMA, state_table

LOG = logging.getLogger(__name__)
LEASE = state_table("lease")
NAME = "target"  # the one row: one writer per target
DEFAULT_EXPIRY = 60.0  # seconds a silent holder keeps the target
DEFAULT_WAIT = 300.0  # seconds a second build waits before it gives up
PROCESS_TOKEN = uuid.uuid4().hex  # this process's owner token (see ``Holder.is_this_process``)

_COLUMNS: dict[str, str] = {
    "lease": "TEXT",
    "owner": "TEXT",  # a process's token; NULL when the lease is free
    "host": "TEXT",
    "pid": "BIGINT",
    "command": "TEXT",
    "since": "TEXT",  # UTC, when the holder took it (informative: expiry uses no shared clock)
    "heartbeat": "TEXT",  # UTC, the holder's last renewal (informative)
    "beat": "BIGINT",  # renewals so far: what waiters watch
    "expiry": "DOUBLE",  # seconds of silence after which the holder counts as dead
}


@dataclass(frozen=True)
class Holder:
    owner: str
    host: str
    pid: int
    command: str
    since: str
    heartbeat: str
    beat: int
    expiry: float

    def describe(self) -> str:
        return (
            f"sqlorch {self.command or '?'} on host {self.host}, pid {self.pid}, since {self.since} "
            f"(last heartbeat {self.heartbeat})"
        )

    def is_this_process(self) -> bool:
        return self.owner == PROCESS_TOKEN and self.pid == os.getpid() and self.host == _host()

    def died_on_this_host(self) -> bool:
        """A holder on this host whose process is gone (or a former process with our pid,
        e.g. pid 1 of a restarted container): it will never renew, so no need to wait."""
        if self.host != _host():
            return False
        if self.pid == os.getpid():
            return self.owner != PROCESS_TOKEN
        return not _alive(self.pid)


def _host() -> str:
    return socket.gethostname()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _eq(column: str, value: Any) -> exp.Expr:
    return exp.EQ(this=exp.column(column, quoted=True), expression=exp.convert(value))


def _update(values: dict[str, Any], where: exp.Expr) -> exp.Update:
    sets = [
        exp.EQ(
            this=exp.column(column, quoted=True),
            expression=value if isinstance(value, exp.Expr) else _value(column, value),
        )
        for column, value in values.items()
    ]
    return exp.Update(
        this=LEASE.to_table(), expressions=sets, where=exp.Where(this=exp.and_(_eq("lease", NAME), where))
    )


def _value(column: str, value: Any) -> exp.Expr:
    """Typed even when NULL: some warehouses (BigQuery) want an UPDATE's types exact."""
    return exp.cast(exp.convert(value), exp.DataType.build(_COLUMNS[column]))


def _create_statement() -> exp.Create:
    free = {"lease": NAME, **dict.fromkeys(list(_COLUMNS)[1:])}
    free["beat"] = 0
    query = exp.select(*[exp.alias_(_value(c, v), c, quoted=True) for c, v in free.items()])
    return exp.Create(this=LEASE.to_table(), kind="TABLE", exists=True, expression=query)


def ensure_lease_table(adapter: Adapter) -> None:
    """The table and its one free row, created together (see the module docstring). Two
    processes creating it at once may see an error from the loser (Postgres: a duplicate
    catalog entry); the table exists afterwards either way."""
    if adapter.columns(LEASE) is not None:
        return
    try:
        adapter.ensure_schema(STATE_SCHEMA)
        adapter.execute(_create_statement())
    except SqlorchError:
        if adapter.columns(LEASE) is None:
            raise


def read_holder(adapter: Adapter) -> Holder | None:
    """Who holds the target's lease, or None when it is free (or was never taken)."""
    return _fetch_holder(adapter) if adapter.columns(LEASE) is not None else None


def _fetch_holder(adapter: Adapter) -> Holder | None:
    query = exp.select(*[exp.column(c, quoted=True) for c in list(_COLUMNS)[1:]])
    rows = adapter.fetch(query.from_(LEASE.to_table()).where(_eq("lease", NAME)))
    if not rows or rows[0][0] is None:
        return None
    owner, host, pid, command, since, heartbeat, beat, expiry = rows[0]
    return Holder(
        str(owner), str(host), int(pid or 0), str(command or ""), str(since), str(heartbeat), int(beat or 0),
        float(expiry or DEFAULT_EXPIRY),
    )  # fmt: skip


def _claim_free(adapter: Adapter, command: str, expiry: float) -> bool:
    """Take the lease if nobody holds it: one UPDATE, the table created on first use only
    (a build with nothing to do pays no catalog query for it)."""
    claim = _update(_claim(command, expiry), exp.column("owner", quoted=True).is_(exp.null()))
    try:
        return adapter.execute(claim) == 1
    except SqlorchError:
        if adapter.columns(LEASE) is not None:
            raise
    ensure_lease_table(adapter)
    return adapter.execute(claim) == 1


def lost_error() -> LockError:
    """What a build that lost its lease part way reports (whatever statement it stopped in)."""
    return LockError(
        "the build lost the target's lease (not renewed within lease_expiry) and stopped: "
        "another process may have taken the target over",
        hint="what finished is committed; run the build again (raise lease_expiry in sqlorch.yml if "
        "the warehouse is often slow to answer)",
    )


class Lease:
    """A held lease: a context manager, released on exit (or by ``release()``). ``lost`` is
    set when renewing failed and another process may have taken the target."""

    def __init__(self, adapter: Adapter | None, expiry: float, on_lost: Callable[[], None] | None) -> None:
        self._adapter = adapter  # None: held by an enclosing lease of this process
        self.expiry = expiry
        self.lost = threading.Event()
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if adapter is not None:
            self._thread = threading.Thread(target=self._beat, name="sqlorch-lease", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        assert self._adapter is not None
        interval = self.expiry / 6
        renewed = time.monotonic()
        while not self._stop.wait(interval):
            try:
                count = self._adapter.execute(
                    _update(
                        {"beat": exp.column("beat", quoted=True) + 1, "heartbeat": _now()}, _eq("owner", PROCESS_TOKEN)
                    )
                )
            except SqlorchError as error:
                LOG.warning("could not renew the lease on the target: %s", error.message)
                if time.monotonic() - renewed < self.expiry:
                    continue
                count = 0
            if count == 0:
                self._lose()
                return
            renewed = time.monotonic()

    def _lose(self) -> None:
        self.lost.set()
        LOG.warning("lost the lease on the target (not renewed within %g s): stopping", self.expiry)
        if self._on_lost is not None:
            self._on_lost()

    def release(self) -> None:
        if self._adapter is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        adapter, self._adapter = self._adapter, None
        try:
            if not self.lost.is_set():
                free = dict.fromkeys(["owner", "host", "pid", "command", "since", "heartbeat"])
                adapter.execute(_update(free, _eq("owner", PROCESS_TOKEN)))
        except SqlorchError as error:  # it expires by itself: the next holder takes it over
            LOG.warning("could not release the lease on the target: %s", error.message)
        finally:
            adapter.close()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def acquire_lease(
    adapter: Adapter,
    command: str = "build",
    wait: float = DEFAULT_WAIT,
    expiry: float = DEFAULT_EXPIRY,
    on_lost: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Lease:
    """Take the target's lease, waiting up to ``wait`` seconds (0: refuse at once) for its
    holder, and keep it renewed on a connection of its own until released. Waiting is
    logged once, naming the holder; giving up raises ``LockError`` naming it too."""
    own = adapter.fork()
    own.interrupts = Interrupts()  # a stopped build still releases its lease
    try:
        if _take(own, adapter.interrupts, command, wait, expiry, clock, sleep):
            return Lease(own, expiry, on_lost)
    except BaseException:
        own.close()
        raise
    own.close()
    return Lease(None, expiry, on_lost)


def _claim(command: str, expiry: float) -> dict[str, Any]:
    now = _now()
    return {
        "owner": PROCESS_TOKEN, "host": _host(), "pid": os.getpid(), "command": command, "since": now,
        "heartbeat": now, "beat": 0, "expiry": expiry,
    }  # fmt: skip


def _take(
    adapter: Adapter,
    interrupts: Interrupts,
    command: str,
    wait: float,
    expiry: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> bool:
    """True when this call took the lease, False when this process held it already."""
    deadline = clock() + wait
    seen: tuple[str, int] | None = None
    seen_at = clock()
    told = False
    while True:
        interrupts.check()
        if _claim_free(adapter, command, expiry):
            return True
        holder = _fetch_holder(adapter)
        if holder is None:
            continue  # released between the two statements
        if holder.is_this_process():
            return False
        if (holder.owner, holder.beat) != seen:
            seen, seen_at = (holder.owner, holder.beat), clock()
        dead = holder.died_on_this_host() or clock() - seen_at >= holder.expiry
        if dead:
            taken = adapter.execute(
                _update(_claim(command, expiry), exp.and_(_eq("owner", holder.owner), _eq("beat", holder.beat)))
            )
            if taken == 1:
                LOG.warning("took over the lease of %s: it stopped renewing it", holder.describe())
                return True
            continue
        if clock() >= deadline:
            raise LockError(
                f"the target is in use by {holder.describe()}",
                hint="wait for it to finish (or stop it), or pass --lease-timeout SECONDS to wait longer"
                if wait
                else "wait for it to finish (or stop it), or leave out --no-wait to wait for it",
            )
        if not told:
            told = True
            LOG.warning("waiting for the target, in use by %s: waiting up to %g s", holder.describe(), wait)
        sleep(min(1.0, holder.expiry / 10))
