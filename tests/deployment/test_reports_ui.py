"""The UI plugin in a real ``airflow api-server``, looked at with a real browser.

Two real runs of the shipped nightly DAG (``dag.test()`` against the sandbox: a bulk night that verifies
every contact, then an instant night with nothing left to verify) write their reports into a data dir.
An api-server on the same metadata DB (the runs and their DAG are there) and the same data dir then
serves the plugin, with the simple auth manager asking for a password: nothing shows without logging
in, and what shows is the two runs, their trend and their reports. Headless Chromium logs in through
Airflow's own login page and opens the reports page, a run's report, the run's "Clearout report" tab
that the bulk task's "Run report" link opens, and the page in the UI's menu; screenshots of each are
saved (the test prints where).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from airflow_stack import HTTP_TIMEOUT, AirflowStack
from dag_runs import shipped_dag, states, xcom
from headless_chromium import Screenshots, chromium, wait_for

from clearout_provider.demo import sandbox_connections
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "clevertap_nightly_list_cleaning"
USER, ROLE = "reader", "viewer"
#: Two nightly runs, the api-server start and the browser, on a busy 2-core machine: a hang guard.
TEST_TIMEOUT = 1500


class ApiServer(AirflowStack):
    """Only the api-server of an :class:`AirflowStack`: the plugin's pages need nothing else."""

    def start_api_server(self) -> ApiServer:
        self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.wait_until(
            "api-server health",
            lambda: requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=HTTP_TIMEOUT).ok,
        )
        return self


@dataclass(frozen=True)
class Served:
    """The api-server with two runs' reports, and how to log in."""

    url: str
    password: str
    run_ids: tuple[str, ...]
    credits_spent: tuple[int, ...]  # as the sandbox's balance saw them
    data_dir: Path

    def token(self) -> str:
        """A JWT for the REST API, as ``POST /auth/token`` hands it out."""
        resp = requests.post(
            f"{self.url}/auth/token", json={"username": USER, "password": self.password}, timeout=HTTP_TIMEOUT
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])


def two_nights(data_dir: Path, ledger: Path) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Run the nightly DAG twice against a fresh sandbox: the run ids, oldest first, and the credits
    each night took from the sandbox's balance."""
    with (
        SandboxProcess(
            SandboxSettings(seed_contacts=2000, bulk_rate=20_000), log_path=data_dir.parent / "sandbox.log"
        ) as server,
        pytest.MonkeyPatch.context() as env,
    ):
        for name, value in sandbox_connections(server).items():
            env.setenv(name, value)
        env.setenv("CLEAROUT_PROVIDER_DATA_DIR", str(data_dir))
        env.setenv("CLEAROUT_PROVIDER_LEDGER_DIR", str(ledger))
        dag = shipped_dag(DAG_ID)
        runs, spent = [], []
        for _night in range(2):
            balance = server.clearout_stats()["credits_available"]
            dr = dag.test()
            assert states(dr)["report"] == "success", states(dr)
            runs.append(dr)
            spent.append(balance - server.clearout_stats()["credits_available"])
        assert "verify_bulk[0]" in states(runs[0]) and states(runs[1])["verify_instant"] == "success"
        # The bulk task's button points at the run's tab, and the sandbox list gets no Clearout app link.
        assert xcom(runs[0], "verify_bulk", 0, key="_link_ClearoutListLink") == ""
        assert spent[0] > 0 and spent[1] == 0  # the second night finds everything fresh
        return tuple(dr.run_id for dr in runs), tuple(spent)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("reports-ui")
    data_dir = root / "clearout_data"
    run_ids, spent = two_nights(data_dir, root / "ledger")
    password = secrets.token_urlsafe(12)
    passwords = root / "passwords.json"
    passwords.write_text(json.dumps({USER: password}))
    server = ApiServer(
        home=Path(os.environ["AIRFLOW_HOME"]),  # the metadata DB dag.test() wrote the runs to
        dags_folder=REPO / "dags",
        extra_env={
            "CLEAROUT_PROVIDER_DATA_DIR": str(data_dir),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:{ROLE}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": os.environ[
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"
            ],
        },
    )
    try:
        server.start_api_server()
        yield Served(server.api_url, password, run_ids, spent, data_dir)
    finally:
        server.stop()


def run_path(run_id: str) -> str:
    return f"/clearout/runs/{DAG_ID}/{quote(run_id, safe='')}"


@pytest.mark.timeout(TEST_TIMEOUT)
def test_nothing_shows_without_logging_in(served: Served) -> None:
    for path in ("/clearout/", run_path(served.run_ids[0])):
        resp = requests.get(served.url + path, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert resp.status_code == 303, (path, resp.status_code, resp.text[:500])
        assert resp.headers["location"].startswith("/auth/login") and "next=" in resp.headers["location"]
        assert DAG_ID not in resp.text
    forged = {"Authorization": "Bearer not-a-token"}
    resp = requests.get(
        served.url + "/clearout/", headers=forged, allow_redirects=False, timeout=HTTP_TIMEOUT
    )
    assert resp.status_code == 303 and DAG_ID not in resp.text


@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_logged_in_reader_gets_the_runs_and_each_report(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.token()}"}
    page = requests.get(served.url + "/clearout/", headers=auth, timeout=HTTP_TIMEOUT)
    assert page.status_code == 200
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script
    for run_id in served.run_ids:
        assert run_id in page.text
    assert page.text.count('class="trend-chart"') == 3
    one_dag = requests.get(
        served.url + "/clearout/", params={"dag_id": DAG_ID}, headers=auth, timeout=HTTP_TIMEOUT
    )
    assert all(run_id in one_dag.text for run_id in served.run_ids)
    unknown = requests.get(
        served.url + "/clearout/", params={"dag_id": "no_such_dag"}, headers=auth, timeout=HTTP_TIMEOUT
    )
    assert (
        unknown.status_code == 200
        and "No report yet" in unknown.text
        and served.run_ids[0] not in unknown.text
    )

    first = requests.get(served.url + run_path(served.run_ids[0]), headers=auth, timeout=HTTP_TIMEOUT)
    assert first.status_code == 200 and "Clearout verification report" in first.text
    assert re.search(r"<b>mode</b> bulk", first.text)
    missing = requests.get(served.url + run_path("manual__no_such_run"), headers=auth, timeout=HTTP_TIMEOUT)
    assert missing.status_code == 404 and "No Clearout report for this run" in missing.text
    other = requests.get(
        served.url + f"/clearout/runs/no_such_dag/{served.run_ids[0]}", headers=auth, timeout=HTTP_TIMEOUT
    )
    assert other.status_code == 404


def log_in(driver: Any, served: Served, path: str) -> None:
    """Open ``path``; on Airflow's login page, log in, and wait to be back on ``path``."""
    from selenium.webdriver.common.by import By

    driver.get(served.url + path)
    user = wait_for(driver, "the login form", lambda d: d.find_elements(By.NAME, "username"))[0]
    user.send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(served.password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, f"{path} after logging in", lambda d: d.current_url.startswith(served.url + path))


@pytest.mark.timeout(TEST_TIMEOUT)
def test_the_reports_in_a_browser(served: Served, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    shots = Screenshots(tmp_path / "screenshots")
    with chromium() as driver:
        log_in(driver, served, "/clearout/")

        charts = wait_for(
            driver, "the trend charts", lambda d: d.find_elements(By.CSS_SELECTOR, "svg.trend-chart")
        )
        assert [c.get_attribute("data-kind") for c in charts] == ["bars", "lines", "bars"]
        titles = [c.find_element(By.TAG_NAME, "title").get_attribute("textContent") for c in charts]
        assert titles[0] == "Credits spent per run" and "invalid and unknown" in titles[1]
        assert all(c.find_elements(By.CSS_SELECTOR, ".mark") for c in charts)
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
        assert [r.find_element(By.CSS_SELECTOR, "a.report-link").text for r in rows] == list(
            reversed(served.run_ids)
        )
        cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        assert [c[2:4] for c in cells] == [["—", "instant"], ["clearout", "bulk"]]  # verifier, mode
        assert [c[5] for c in cells] == [f"{n:,}" for n in reversed(served.credits_spent)]
        bars = charts[0].find_elements(By.CSS_SELECTOR, "rect.mark title")
        assert [b.get_attribute("textContent").rsplit(": ", 1)[1] for b in bars] == [
            f"{n:,}" for n in served.credits_spent
        ]
        shots.take(driver, "reports-page")

        rows[-1].find_element(By.CSS_SELECTOR, "a.report-link").click()
        heading = wait_for(
            driver, "the first run's report", lambda d: d.find_elements(By.CSS_SELECTOR, "main.report h1")
        )
        assert heading[0].text == f"Clearout verification report: {DAG_ID}"
        assert driver.find_elements(By.CSS_SELECTOR, "main.report section svg")  # the report's own bar charts
        assert served.run_ids[0] in driver.find_element(By.CSS_SELECTOR, "main.report .run").text
        shots.take(driver, "run-report")

        # The bulk task's "Run report" button, as the UI lists it, opens the report tab of the run.
        token = driver.get_cookie("_token")["value"]
        links = requests.get(
            f"{served.url}/api/v2/dags/{DAG_ID}/dagRuns/{quote(served.run_ids[0], safe='')}"
            "/taskInstances/verify_bulk/links",
            params={"map_index": 0},
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT,
        ).json()["extra_links"]
        assert set(links) == {"Run report", "Clearout list"} and not links["Clearout list"]
        driver.get(served.url + links["Run report"])
        frame = wait_for(
            driver,
            "the run's Clearout report tab",
            lambda d: d.find_elements(By.CSS_SELECTOR, "iframe[title='Clearout report']"),
        )
        driver.switch_to.frame(frame[0])
        heading = wait_for(
            driver, "the report inside the tab", lambda d: d.find_elements(By.CSS_SELECTOR, "main.report h1")
        )
        assert DAG_ID in heading[0].text
        driver.switch_to.default_content()
        shots.take(driver, "dag-run-tab")  # once the report has rendered inside the tab

        driver.get(f"{served.url}/plugin/clearout-reports")
        frame = wait_for(
            driver,
            "the reports page in the UI",
            lambda d: d.find_elements(By.CSS_SELECTOR, "iframe[title='Clearout reports']"),
        )
        driver.switch_to.frame(frame[0])
        wait_for(
            driver, "the charts inside the UI", lambda d: d.find_elements(By.CSS_SELECTOR, "svg.trend-chart")
        )
        driver.switch_to.default_content()
        shots.take(driver, "ui-menu-page")
    print(f"screenshots in {shots.folder}")
