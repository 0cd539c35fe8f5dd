"""A real headless Chromium for the docs site (Debian's `chromium` and `chromium-driver`,
installed by scripts/test), driven by Selenium. Used by tests/test_docs_site.py and
bench/docs_bench.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

REQUIRED = os.environ.get("SQLORCH_BROWSER_REQUIRED") == "1"  # set by scripts/test: missing means fail
BINARIES = {"chromium": ("chromium", "chromium-browser"), "driver": ("chromedriver",)}


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for role, names in BINARIES.items():
        if not any(shutil.which(name) for name in names):
            return f"no {role} on PATH (apt-get install chromium chromium-driver; scripts/test does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@contextmanager
def chromium(width: int = 1500, height: int = 900) -> Iterator[Any]:
    """A headless Chromium whose console messages can be read with get_log('browser'), and
    its network requests with ``requested``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(argument)
    binary = next(found for name in BINARIES["chromium"] if (found := shutil.which(name)))
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def requested(driver: Any) -> list[str]:
    """The URLs the page requested since the last call (Chrome's network events)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
