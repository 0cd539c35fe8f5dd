#!/usr/bin/env bash
# Create the virtualenv holding dbt-duckdb, against which tests/dbt builds the same
# dbt project as sqlorch and compares every table.
#
#   tests/dbt/setup.sh            # create or check the venv (a second run takes about a second)
#   tests/dbt/setup.sh --force    # rebuild even if up to date
#
# The venv goes to ${SQLORCH_STANDINS_DIR:-<repo>/.standins}/dbt/venv, next to the warehouse
# stand-ins: dbt's pins (protobuf, networkx, its own sqlparse) must not meet sqlorch's.
# dbt 2.x downloads an engine at install time and cannot be used offline, hence the pins.
# DuckDB is pinned to the version sqlorch's venv (<repo>/.venv) has, else 2.0.1.
# A stamp (hash of python version + requirements) leaves a matching venv alone.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${SQLORCH_STANDINS_DIR:-$REPO/.standins}"
PY="${SQLORCH_STANDINS_PYTHON:-python3}"
# DuckDB as in sqlorch's own venv (the tests read dbt's database file with it)
DUCKDB="${SQLORCH_DBT_DUCKDB:-$("$REPO/.venv/bin/python" -c 'import duckdb; print(duckdb.__version__)' 2>/dev/null || echo 2.0.1)}"
REQUIREMENTS=("dbt-core>=1.11,<1.12" "dbt-duckdb==1.11.1" "duckdb==$DUCKDB")

log() { printf '[dbt setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

command -v "$PY" >/dev/null 2>&1 || die "python not found: $PY (set SQLORCH_STANDINS_PYTHON)"
mkdir -p "$DIR/dbt" "$DIR/logs"
DIR="$(cd "$DIR" && pwd)"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.dbt-setup.lock"
    flock 9
fi

sha() { if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1; else shasum -a 256 | cut -d' ' -f1; fi; }
venv="$DIR/dbt/venv"
pip_log="$DIR/logs/dbt-pip.log"
stamp="$({ "$PY" -c 'import sys; print(sys.version.split()[0])'; printf '%s\n' "${REQUIREMENTS[@]}"; } | sha)"

if [ "$FORCE" = 0 ] && [ -f "$venv/.sqlorch-stamp" ] && [ "$(cat "$venv/.sqlorch-stamp")" = "$stamp" ] \
    && [ -x "$venv/bin/dbt" ]; then
    log "up to date ($venv)"
    exit 0
fi

t0=$SECONDS
log "creating venv $venv"
rm -rf "$venv"
"$PY" -m venv "$venv" || die "could not create venv with $PY"
log "pip install ${REQUIREMENTS[*]}"
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input "${REQUIREMENTS[@]}" >"$pip_log" 2>&1; then
    tail -n 30 "$pip_log" >&2 || true
    die "pip install failed (full log: $pip_log)"
fi
if ! "$venv/bin/dbt" --version >>"$pip_log" 2>&1; then
    tail -n 20 "$pip_log" >&2 || true
    die "smoke check failed: dbt --version"
fi
echo "$stamp" >"$venv/.sqlorch-stamp"
log "ready in $((SECONDS - t0))s"
