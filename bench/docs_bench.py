"""Time `sqlorch docs` on a generated project, and the docs page until it is interactive in
headless Chromium.

    python bench/docs_bench.py [--models 10000] [--out DIR] [--repeat 3] [--write-results]

The project is bench/compile_project.py's (staging, intermediate, marts; sources with
declared columns). `sqlorch docs` runs once to fill the caches (cold, reported), then
``--repeat`` times warm (nothing changed), each in a fresh process, wall time. The page is
opened ``--repeat`` times from file:// in a fresh tab of Debian's chromium (Selenium, see
tests/browser.py); "interactive" is the page's own mark once the graph and the first page
are drawn and the handlers are attached (``window.SQLORCH_READY``, milliseconds since the
navigation started). Also timed in the page: selecting another model and clicking a column.

``--write-results`` puts the figures in bench/RESULTS.md as the section between the
``docs_bench`` markers (added at the end the first time; the rest of the file is untouched).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.compile_project import generate  # noqa: E402
from bench.report import replace_section  # noqa: E402
from tests import browser  # noqa: E402

START, END = "<!-- docs_bench:start -->", "<!-- docs_bench:end -->"
TARGETS = {"warm": 5.0, "interactive": 2.0}


def time_docs(root: Path) -> tuple[float, str]:
    sqlorch = Path(sys.executable).with_name("sqlorch")
    start = time.perf_counter()
    done = subprocess.run([str(sqlorch), "docs", "--project-dir", str(root)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"sqlorch docs failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
    return seconds, done.stdout


def time_page(page: Path, repeat: int) -> dict[str, list[float]]:
    """Per load: ms until interactive; then in the page: ms to select a model, to click a column."""
    figures: dict[str, list[float]] = {"interactive": [], "select": [], "column": []}
    with browser.chromium() as driver:
        for _ in range(repeat):
            driver.get("about:blank")
            driver.get(page.resolve().as_uri() + "#marts.mart_1")
            deadline = time.monotonic() + 60
            while driver.execute_script("return document.body && document.body.dataset.ready") != "true":
                if time.monotonic() > deadline:
                    raise SystemExit("the page never became interactive")
                time.sleep(0.02)
            figures["interactive"].append(driver.execute_script("return window.SQLORCH_READY"))
            figures["select"].append(
                driver.execute_script(
                    "const d = window.sqlorchDocs; const t = performance.now();"
                    "d.select(d.nodes.findIndex(n => n.id === 'intermediate.int_7')); return performance.now() - t;"
                )
            )
            figures["column"].append(
                driver.execute_script(
                    "const t = performance.now();"
                    "document.querySelector('tr.column-row[data-column=amount]').click(); return performance.now() - t;"
                )
            )
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        if errors:
            raise SystemExit(f"console errors: {errors}")
    return figures


def section(args: argparse.Namespace, cold: float, warm: list[float], page: dict[str, list[float]], size: int) -> str:
    def runs(values: list[float], unit: str = "s", digits: int = 2) -> str:
        return ", ".join(f"{v:.{digits}f} {unit}" for v in values)

    warm_median = statistics.median(warm)
    interactive = statistics.median(page["interactive"]) / 1000
    verdict = {True: "**MET**", False: "**NOT MET**"}
    load = os.getloadavg()[0]
    warm_row = (
        f"| `sqlorch docs`, {args.models:,} models, warm < {TARGETS['warm']:.0f} s "
        f"| median {warm_median:.2f} s ({runs(warm)}) | {verdict[warm_median < TARGETS['warm']]} |"
    )
    page_row = (
        f"| page interactive in headless Chromium < {TARGETS['interactive']:.0f} s "
        f"| median {interactive:.2f} s ({runs(page['interactive'], 'ms', 0)}) "
        f"| {verdict[interactive < TARGETS['interactive']]} |"
    )
    return f"""{START}
## `sqlorch docs` at {args.models:,} models

- Command: `python bench/docs_bench.py --models {args.models} --repeat {args.repeat} --write-results`
- Date: {datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")} (UTC); machine: {os.cpu_count()} cores,
  {platform.platform()}, Python {platform.python_version()}, {browser_version()}; 1-minute load average {load:.1f}
- Site: {size / 1e6:.1f} MB (`data.js`, `sql.js` and the assets) for {args.models:,} models and their sources

| target | measured | verdict |
|---|---|---|
{warm_row}
{page_row}

Also measured: `sqlorch docs` cold (no caches, nothing compiled) {cold:.2f} s; in the page,
selecting another model (its page and the graph around it) median
{statistics.median(page["select"]):.0f} ms, the first click on a column (it builds the column graph
of the whole project, then walks it both ways and highlights the result) median
{statistics.median(page["column"]):.0f} ms.

Warm is a fresh process each time with nothing changed: `sqlorch docs` takes the digest of
everything a compile reads (as the compile stamp does), finds the site data of its last run
under that digest (`target/cache/docs.json`), reads the run ledger (here no warehouse
exists, so it notes why) and writes the site; it loads no model. Cold compiles all models
(qualify, columns and lineage: about half of it), then finds each model's output key for
its page (about 1 ms a model). "Interactive" is the page's own mark (`window.SQLORCH_READY`,
ms since the navigation started) once `data.js` is parsed, the model graph's indexes are
built, the graph around the selected model and its page are drawn and the handlers are
attached; the page opens on a neighbourhood (two steps around the model, at most 500
nodes), never on all {args.models:,}; the SQL texts (`sql.js`) load after that. The machine is shared
(2 cores, busy with other work): wall times are noisy.
{END}
"""


def browser_version() -> str:
    binary = shutil.which("chromium") or "chromium"
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "chromium (version unknown)"


def write_results(text: str) -> None:
    replace_section(REPO / "bench" / "RESULTS.md", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=None, help="project folder (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-results", action="store_true", help="put the figures in bench/RESULTS.md")
    args = parser.parse_args()
    reason = browser.missing()
    if reason:
        raise SystemExit(reason)
    root = args.out or Path(tempfile.mkdtemp(prefix="sqlorch-docs-bench-")) / "project"
    generate(root, args.models)
    print(f"project: {root} ({args.models} models)")
    cold, output = time_docs(root)
    print(f"sqlorch docs, cold: {cold:.2f}s\n{output.strip()}")
    warm = [time_docs(root)[0] for _ in range(args.repeat)]
    print(f"sqlorch docs, warm: median {statistics.median(warm):.2f}s ({', '.join(f'{t:.2f}s' for t in warm)})")
    site = root / "target" / "docs"
    size = sum(path.stat().st_size for path in site.rglob("*") if path.is_file())
    page = time_page(site / "index.html", args.repeat)
    for name, values in page.items():
        print(f"page {name}: median {statistics.median(values):.0f} ms ({', '.join(f'{v:.0f}' for v in values)})")
    text = section(args, cold, warm, page, size)
    if args.write_results:
        write_results(text)
        print("wrote the docs section of bench/RESULTS.md")


if __name__ == "__main__":
    main()
