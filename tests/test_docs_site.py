"""`sqlorch docs` in a real headless Chromium: the page opens from file:// with no console
errors and no request outside its folder, search finds a model, clicking a model in the
graph shows its upstream and downstream, clicking a column highlights its lineage, runs come
from the ledger. A screenshot is kept in target/test-artifacts/ at the repository root."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import browser
from tests.conftest import REPO

ARTIFACTS = REPO / "target" / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = browser.missing()
    if reason:
        if browser.REQUIRED:
            pytest.fail(f"{reason} (SQLORCH_BROWSER_REQUIRED=1)")
        pytest.skip(reason)
    with browser.chromium() as driver:
        yield driver


def open_page(driver: Any, page: Path, fragment: str = "") -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    browser.requested(driver)
    driver.get(page.resolve().as_uri() + fragment)
    deadline = time.monotonic() + 20
    while driver.execute_script("return document.body.dataset.ready") != "true":
        assert time.monotonic() < deadline, "the page never became ready"
        time.sleep(0.05)


def read_js(path: Path) -> Any:
    """The value a data file assigns: ``window.X = JSON.parse("...");``."""
    literal = path.read_text().split(" = JSON.parse(", 1)[1].removesuffix(");\n")
    return json.loads(json.loads(literal))


def site_data(folder: Path) -> dict[str, Any]:
    """data.js, with each model's SQL texts from sql.js put back."""
    data, sql = (read_js(folder / name) for name in ("data.js", "sql.js"))
    for node in data["nodes"]:
        if node["id"] in sql:
            node["sql"], node["compiled_sql"] = sql[node["id"]]
    return data


def texts(driver: Any, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, selector)]


def click_graph_node(driver: Any, name: str) -> None:
    """A real mouse click where the graph draws the node (its rendered position)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    x, y = driver.execute_script(
        "const d = window.sqlorchDocs; const i = d.nodes.findIndex(n => n.id === arguments[0]);"
        "const p = d.cy.getElementById(String(i)).renderedPosition(); return [p.x, p.y];",
        name,
    )
    graph = driver.find_element(By.ID, "graph")
    size = graph.size
    offset = (x - size["width"] / 2, y - size["height"] / 2)  # from the element's centre
    ActionChains(driver).move_to_element_with_offset(graph, *offset).click().perform()


def node_classes(driver: Any, name: str) -> list[str]:
    return driver.execute_script(
        "const d = window.sqlorchDocs; const i = d.nodes.findIndex(n => n.id === arguments[0]);"
        "return d.cy.getElementById(String(i)).classes();",
        name,
    )


def test_demo_site_in_headless_chromium(demo_project: Path, cli: Any, chromium: Any) -> None:
    from selenium.webdriver.common.by import By

    assert cli("build", "--project-dir", demo_project).exit_code == 0
    run = cli("docs", "--project-dir", demo_project)
    assert run.exit_code == 0, run.output
    page = demo_project / "target" / "docs" / "index.html"
    assert page.resolve().as_uri() in run.output
    open_page(chromium, page)

    log = chromium.get_log("browser")
    assert [entry for entry in log if entry["level"] in ("SEVERE", "WARNING")] == [], log
    requests = browser.requested(chromium)
    folder = page.parent.resolve().as_uri()
    assert {url.removeprefix(folder + "/") for url in requests if not url.startswith("data:")} == {
        "index.html",
        "app.css",
        "vendor/cytoscape.min.js",
        "data.js",
        "app.js",
        "sql.js",
    }, requests

    search = chromium.find_element(By.ID, "search")
    search.send_keys("daily")
    assert texts(chromium, ".search-result") == ["marts.daily_revenue\nmodel"]
    chromium.find_element(By.CSS_SELECTOR, ".search-result").click()
    assert chromium.find_element(By.ID, "node-title").text == "marts.daily_revenue"
    assert "add partial aggregates" in chromium.find_element(By.ID, "details").text
    assert "GROUP BY order_date, country" in chromium.find_element(By.ID, "sql").text
    assert '"intermediate"."int_orders_enriched"' in chromium.find_element(By.ID, "compiled-sql").text

    click_graph_node(chromium, "intermediate.int_orders_enriched")
    assert chromium.find_element(By.ID, "node-title").text == "intermediate.int_orders_enriched"
    assert texts(chromium, "#upstream li") == ["staging.stg_customers", "staging.stg_orders"]
    marts = ["marts.customer_orders", "marts.customer_summary", "marts.daily_revenue"]
    assert texts(chromium, "#downstream li") == marts
    assert "selected" in node_classes(chromium, "intermediate.int_orders_enriched")
    assert "upstream" in node_classes(chromium, "seeds.orders")
    assert "downstream" in node_classes(chromium, "marts.daily_revenue")

    chromium.find_element(By.CSS_SELECTOR, "tr.column-row[data-column='amount']").click()
    upstream = texts(chromium, "#lineage-upstream li")
    downstream = texts(chromium, "#lineage-downstream li")
    assert "staging.stg_orders.amount passthrough" in upstream
    assert "seeds.orders.amount transformed" in upstream
    assert "seeds.orders.status filter" in upstream
    assert sorted(downstream) == [
        "marts.customer_orders.amount passthrough",
        "marts.customer_orders.running_total transformed",
        "marts.customer_summary.lifetime_value transformed",
        "marts.daily_revenue.revenue transformed",
    ]
    assert "lineage-up" in node_classes(chromium, "seeds.orders")
    assert "lineage-down" in node_classes(chromium, "marts.daily_revenue")
    assert "lineage-down" not in node_classes(chromium, "staging.stg_customers")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "docs-demo.png"
    assert chromium.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    # the highlight follows to the page of a column it reached
    chromium.find_element(By.CSS_SELECTOR, "#downstream a[data-node='marts.daily_revenue']").click()
    row = chromium.find_element(By.CSS_SELECTOR, "tr.column-row[data-column='revenue']")
    assert "lineage-down" in row.get_attribute("class").split()
    assert (
        "lineage-down"
        not in chromium.find_element(By.CSS_SELECTOR, "tr.column-row[data-column='orders']")
        .get_attribute("class")
        .split()
    )

    runs = texts(chromium, "#runs tr")
    built = json.loads((demo_project / "target" / "run_results.json").read_text())["results"]
    rows = next(result["rows"] for result in built if result["model"] == "marts.daily_revenue")
    assert runs[0].split() == ["status", "action", "rows", "seconds", "reason"]
    assert runs[1].startswith(f"success full {rows} ") and runs[1].endswith("first build"), runs

    # the model's declared audits with their result in the last build (run_results.json)
    audits = texts(chromium, "#audits tr")
    assert audits[0] == "audit blocking last result failing rows"
    assert "unique(order_date, country) yes pass 0" in audits[1:], audits
    assert [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_without_a_warehouse_the_page_says_why_there_are_no_runs(demo_project: Path, cli: Any, chromium: Any) -> None:
    from selenium.webdriver.common.by import By

    out = demo_project / "site"
    run = cli("docs", "--project-dir", demo_project, "--out", out)
    assert run.exit_code == 0, run.output
    assert not (demo_project / "warehouse.duckdb").exists()  # docs never create a warehouse
    open_page(chromium, out / "index.html", "#staging.stg_orders")
    assert chromium.find_element(By.ID, "node-title").text == "staging.stg_orders"
    assert "has not been built yet" in chromium.find_element(By.ID, "runs-note").text
    node = next(n for n in site_data(out)["nodes"] if n["id"] == "staging.stg_orders")
    assert node["freshness"] is None and node["runs"] == []
    # declared audits are listed; never built, they have no result
    assert {a["name"]: (a["blocking"], a["status"]) for a in node["audits"]} == {
        "not_null(order_id)": (True, None),
        "unique(order_id)": (True, None),
        "accepted_values(status, 'completed', 'returned')": (True, None),
        "expression(amount >= 0)": (True, None),
        "not_null(customer_id)": (False, None),
    }


def test_a_large_project_opens_on_a_neighbourhood(tmp_path: Path, cli: Any, chromium: Any) -> None:
    from bench.compile_project import generate

    root = tmp_path / "large"
    generate(root, 400)
    assert cli("docs", "--project-dir", root).exit_code == 0
    open_page(chromium, root / "target" / "docs" / "index.html", "#marts.mart_1")
    shown = chromium.execute_script("return window.sqlorchDocs.cy.nodes().length")
    total = chromium.execute_script("return window.sqlorchDocs.nodes.length")
    assert total == 420  # 400 models and 20 sources
    assert 3 <= shown < 60, shown  # two steps around marts.mart_1, not the whole project


def test_unchanged_project_reuses_the_site_data_but_never_the_runs(demo_project: Path, cli: Any) -> None:
    site = demo_project / "target" / "docs"
    assert cli("docs", "--project-dir", demo_project).exit_code == 0
    assert (demo_project / "target" / "cache" / "docs.json").exists()
    before = site_data(site)
    assert all(node["runs"] == [] for node in before["nodes"])

    assert cli("build", "--project-dir", demo_project).exit_code == 0  # no project file changes
    assert cli("docs", "--project-dir", demo_project).exit_code == 0
    after = site_data(site)
    runs = {node["id"]: node["runs"] for node in after["nodes"] if node["runs"]}
    assert set(runs) == {n["id"] for n in after["nodes"] if n["type"] in ("model", "seed")}, runs
    assert after["runs_note"] is None

    model = demo_project / "models" / "marts" / "daily_revenue.sql"
    model.write_text(model.read_text().replace("count(*) AS orders", "count(*) AS order_count"))
    assert cli("docs", "--project-dir", demo_project).exit_code == 0
    node = next(n for n in site_data(site)["nodes"] if n["id"] == "marts.daily_revenue")
    assert [c["name"] for c in node["columns"]] == ["order_date", "country", "order_count", "revenue"]
    assert "order_count" in node["sql"] and "order_count" in node["compiled_sql"]
