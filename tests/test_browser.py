"""What a user sees, checked in a real browser: Debian's headless chromium (driven by selenium
through Debian's chromedriver, nothing downloaded) over the HTML reports and over a real
``mlflow server`` on 127.0.0.1 showing a registered model.

Screenshots land in each test's tmp folder (``<name>.png``), for a person to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _pipeline import _empty_mlflow_db  # noqa: F401 (fixture)
from _training import make_lanes
from test_mlflow_ux import register_like_the_pipeline, ux_store  # noqa: F401 (fixture)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60  # the MLflow UI is a React app: a loaded test machine takes its time to render

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (scripts/system-deps.sh installs them)")

#: Console errors that are MLflow's UI probing for a feature this server does not run (user
#: accounts come with ``mlflow server --app-name basic-auth`` only), not a fault of the page.
_MLFLOW_UI_PROBES = ("/ajax-api/2.0/mlflow/users/current",)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never fetches a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def mlflow_ui(ux_store, tmp_path_factory) -> Iterator[str]:  # noqa: F811
    """``mlflow server`` over the module's SQLite store on a free loopback port. Started before
    the registration (which writes to the same store) so that its start-up overlaps it."""
    from conftest import free_port

    port = free_port()
    log_path = tmp_path_factory.mktemp("mlflow-ui") / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{ux_store}"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "NO_PROXY": "*"},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _wait_healthy(uri: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def shown(mlflow_ui, ux_store):  # noqa: F811
    """The registration the UI shows (made while the server starts), once the server is up."""
    registered = register_like_the_pipeline(ux_store.parent.parent, name="rv-ui")
    _wait_healthy(mlflow_ui)
    return registered


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(p in e["message"] for p in _MLFLOW_UI_PROBES)]


def _wait_for(driver, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S).until(condition)
    except TimeoutException:
        raise AssertionError(f"the page never showed {what}: {driver.current_url}") from None


def _body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _registered_report(shown, tmp_path: Path) -> Path:
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(f"models:/{shown.name}/{shown.version}/report.html",
                                   dst_path=str(tmp_path / "dl")))


def test_reports_read_as_pages(browser, shown, tmp_path):
    from selenium.webdriver.common.by import By

    from roadvision.evaluation import error_analysis
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    browser.get_log("browser")  # start with an empty console
    browser.get(_registered_report(shown, tmp_path).as_uri())
    assert browser.title == f"Error analysis: {shown.name} v{shown.version}"
    banner = browser.find_element(By.ID, "synthetic")
    assert banner.is_displayed() and "Synthetic data" in banner.text
    rows = {r.find_element(By.TAG_NAME, "th").text: r.find_element(By.TAG_NAME, "td").text
            for r in browser.find_elements(By.CSS_SELECTOR, "#summary-table tr")}
    assert {"task", "images", "failures", "mcc", "ece"} <= set(rows)
    assert rows["images"].isdigit() and rows["failures"].isdigit()  # counts, never "6.000"
    assert len(rows["mcc"].rpartition(".")[2]) == 3  # 3 decimals, not 16 digits
    text = _body(browser)
    assert "<NA>" not in text and "NULL" not in text
    browser.save_screenshot(str(tmp_path / "roadwork_report.png"))
    assert _console_errors(browser) == []

    # lanes: the gallery's overlays come with a colour legend
    data = make_lanes(tmp_path / "lanes", n=10, size=64)
    torch.manual_seed(0)
    save_bundle(create_model("lanes_tiny"), tmp_path / "lanes_bundle")
    page = error_analysis(tmp_path / "lanes_bundle", data, tmp_path / "lanes_ea", max_gallery=2)
    assert page.name == "error_analysis.html"
    browser.get(page.as_uri())
    legend = browser.find_element(By.ID, "legend")
    assert legend.is_displayed()
    assert len(legend.find_elements(By.CLASS_NAME, "swatch")) == 3
    assert {"white_solid", "white_dashed", "yellow_solid"} <= set(legend.text.split())
    assert "not registered" in browser.title  # a bare bundle is named as one
    browser.save_screenshot(str(tmp_path / "lanes_report.png"))
    assert _console_errors(browser) == []


def test_mlflow_ui_shows_the_version_its_aliases_and_the_report(browser, mlflow_ui, shown,
                                                                tmp_path):
    from selenium.webdriver.common.by import By

    from roadvision.registry import RegistryClient
    from roadvision.registry.publish import logged_model_id

    browser.get_log("browser")
    # the model version page (MLflow 3's route: #/models/<name>/versions/<version>)
    browser.get(f"{mlflow_ui}/#/models/{shown.name}/versions/{shown.version}")
    _wait_for(browser, lambda d: "champion" in _body(d) and "challenger" in _body(d),
              "the version's aliases")
    text = _body(browser)
    assert f"Version {shown.version}" in text
    assert "@ champion" in text and "@ challenger" in text
    assert "metric.headline" in text and "metric.slices" not in text  # a short tag list
    browser.save_screenshot(str(tmp_path / "model_version.png"))
    assert _console_errors(browser) == []

    # the report beside the model renders in MLflow's artifact viewer
    client = RegistryClient().mlflow
    mv = client.get_model_version(shown.name, shown.version)
    experiment = client.get_run(mv.run_id).info.experiment_id
    browser.get(f"{mlflow_ui}/#/experiments/{experiment}/models/{logged_model_id(mv)}/artifacts")
    entry = _wait_for(browser, lambda d: next(iter(d.find_elements(
        By.XPATH, "//*[normalize-space(text())='report.html']")), None), "report.html listed")
    entry.click()
    frame = _wait_for(browser, lambda d: next(iter(d.find_elements(
        By.CSS_SELECTOR, "iframe.mlflow-html-iframe")), None), "the report's frame")
    browser.switch_to.frame(frame)
    try:
        title = _wait_for(browser, lambda d: next(iter(d.find_elements(By.ID, "title")), None),
                          "the report's title")
        assert title.text == f"Error analysis: {shown.name} v{shown.version}"
        assert browser.find_elements(By.CSS_SELECTOR, "#summary-table tr")
        assert "Synthetic data" in browser.find_element(By.ID, "synthetic").text
    finally:
        browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "report_in_mlflow.png"))
    assert _console_errors(browser) == []
