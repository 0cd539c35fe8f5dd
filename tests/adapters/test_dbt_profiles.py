"""A dbt project with a dbt-shaped ``profiles.yml`` builds on every target: the output's
fields are mapped to sqlorch's, its ``schema`` names the model schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, build
from tests.conftest import write_files


def _dbt_output(warehouse: Warehouse) -> dict[str, Any]:
    settings = {key: value for key, value in warehouse.settings.items() if key != "network_timeout"}
    output: dict[str, Any] = {"type": warehouse.kind, **settings}
    if warehouse.kind == "bigquery":
        output.update(method="oauth", dataset="analytics")
    else:
        output["schema"] = "analytics"
    return output


def test_dbt_project_with_dbt_profile_builds(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(
        tmp_path / "project",
        {
            "dbt_project.yml": """
                name: tiny
                profile: tiny
                models:
                  tiny:
                    staging: {+schema: staging}
                    marts: {+schema: marts, +materialized: table}
            """,
            "seeds/numbers.csv": "id,v\n1,10\n2,20\n3,30\n",
            "models/staging/stg_numbers.sql": "select id, v * 2 as v2 from {{ ref('numbers') }}",
            "models/marts/totals.sql": "select count(*) as n, sum(v2) as s from {{ ref('stg_numbers') }}",
            "models/marts/numbers_inc.sql": """
                {{ config(materialized='incremental', unique_key='id') }}
                select id, v2 from {{ ref('stg_numbers') }}
                {% if is_incremental() %}where id > (select max(id) from {{ this }}){% endif %}
            """,
        },
    )
    warehouse.profiles_dir.mkdir(parents=True, exist_ok=True)
    profile = {"tiny": {"target": "ci", "outputs": {"ci": _dbt_output(warehouse)}}}
    (warehouse.profiles_dir / "profiles.yml").write_text(yaml.safe_dump(profile))
    results = build(warehouse, project)
    assert set(results) == {
        "analytics.numbers",
        "analytics_staging.stg_numbers",
        "analytics_marts.totals",
        "analytics_marts.numbers_inc",
    }
    sizes = assert_models_match_their_sql(warehouse, project)
    assert sizes == {"analytics_marts.totals": 1, "analytics_marts.numbers_inc": 3, "analytics_staging.stg_numbers": 3}
