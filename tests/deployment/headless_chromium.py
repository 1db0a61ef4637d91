"""Headless Chromium for UI tests, driven with Selenium through the Debian ``chromium`` and
``chromium-driver`` packages (``.ci/run`` installs them on CI).

Without them a test SKIPS saying what is missing, except under ``CI=true``, where it FAILS
(:func:`local_services.unavailable`). The browser starts with a new, empty profile and no background
traffic (no sync, no component updates, no QUIC), so it only ever talks to the server under test.

Waiting: every wait is for a condition in the page, polled up to :data:`PAGE_TIMEOUT`; a busy 2-core
machine renders the Airflow UI several times slower than an idle one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from local_services import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Ceiling of one page load or one wait for an element: a loaded machine renders late, not never.
PAGE_TIMEOUT = 180.0
#: Where screenshots are also copied, to look at after the test's tmp dir is gone.
SHOTS_DIR = Path("/tmp/clearout-ui-shots")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1600",
)


@contextmanager
def chromium() -> Iterator[Any]:
    """A Selenium Chrome driver on headless Chromium with a profile of its own, quit afterwards."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        unavailable(
            f"headless browser tests need {' and '.join(missing)} (apt-get install chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("headless browser tests need selenium (the dev extra)")
    profile = Path(tempfile.mkdtemp(prefix="clearout-chromium-profile-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, what: str, condition: Callable[[Any], Any], timeout: float = PAGE_TIMEOUT) -> Any:
    """Poll ``condition(driver)`` until it returns something truthy (returned), or fail naming ``what``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; at {driver.current_url}:\n"
            f"{driver.page_source[:3000]}"
        ) from None


class Screenshots:
    """Saves numbered screenshots in ``folder`` and copies each to :data:`SHOTS_DIR`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        SHOTS_DIR.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []

    def take(self, driver: Any, name: str) -> Path:
        path = self.folder / f"{len(self.saved) + 1:02d}-{name}.png"
        driver.save_screenshot(str(path))
        shutil.copy2(path, SHOTS_DIR / path.name)
        self.saved.append(path)
        print(f"screenshot: {path} (copy in {SHOTS_DIR})")
        return path
