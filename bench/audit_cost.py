"""Rows read by a passing audit on an incremental step (issue 13's cost figure).

Builds the benchmark pipeline (bench/pipeline/plain) with audits on ``staging.stg_events``,
applies one delta (new events appended), builds again with DuckDB's profiler on, and
reports the rows scanned by the audit queries next to the size of the audited table.

    python bench/audit_cost.py --events 1000000 --new-events 10000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from datagen import COUNTRIES, generate  # noqa: E402
from delta import apply_delta  # noqa: E402
from rows_read import statement_rows, statement_sql  # noqa: E402

from sqlorch import api  # noqa: E402

AUDITS = (
    "not_null(event_id), unique(event_id), expression(user_id > 0), "
    f"accepted_values(country, {', '.join(repr(c) for c in (*COUNTRIES, 'ZZ'))})"
)
AUDIT_MARKER = ") AS bad"  # every audit query counts its bad rows from a subquery named bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--new-events", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sqlorch-audit-cost-") as folder:
        root = Path(folder)
        shutil.copytree(HERE / "pipeline" / "plain" / "models", root / "models")
        model = root / "models" / "staging" / "stg_events.sql"
        model.write_text(f"-- audits: {AUDITS}\n" + model.read_text())
        db, log = root / "warehouse.duckdb", root / "profile.jsonl"
        target = {"type": "duckdb", "path": str(db), "profile_log": str(log)}
        (root / "profiles.yml").write_text(yaml.safe_dump({"target": "dev", "targets": {"dev": target}}))
        generate(db, args.events)
        options = api.Options(project_dir=root, profiles_dir=root, select="staging.stg_events")
        api.build(options)
        apply_delta(db, 1, new_events=args.new_events)
        log.unlink()
        result = api.build(options).results[0]
        per_audit: list[int] = []
        model_rows = 0
        for line in log.read_text().splitlines():
            profile = json.loads(line)
            rows = statement_rows(profile)
            model_rows += rows
            if AUDIT_MARKER in statement_sql(profile):
                per_audit.append(rows)
        with duckdb.connect(str(db), read_only=True) as connection:
            table_rows = connection.execute("SELECT count(*) FROM staging.stg_events").fetchone()
        audits = [
            f"{a['name'].split('(')[0]}: {a['status']}, {rows} rows scanned"
            for a, rows in zip(result.audits, per_audit, strict=True)
        ]
        summary = {
            "events": args.events,
            "new_events": args.new_events,
            "action": f"{result.action}: {result.reason}",
            "rows_written": result.rows,
            "audited_table_rows": table_rows[0] if table_rows else None,
            "audits": audits,
            "rows_scanned_by_audits": sum(per_audit),
            "rows_scanned_by_the_whole_build": model_rows,
        }
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
