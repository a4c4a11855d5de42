"""The dashboard at /ui in a real headless Chromium: live queue, owner-only buttons, a growing log tail, no console errors; saves docs/dashboard.png."""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = REPO / "docs" / "dashboard.png"
WAIT = 20.0


def _browser_missing() -> str | None:
    import importlib.util
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return (f"{path} is missing: run .ci/setup-browser.sh (Debian packages chromium "
                    "and chromium-driver)")
    return None


@pytest.fixture
def browser(tmp_path):
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1366,860",
                "--force-prefers-reduced-motion", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, predicate, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
            lambda d: predicate(d))
    except Exception as exc:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from exc


def console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def row(driver, job_id: int):
    from selenium.webdriver.common.by import By
    found = driver.find_elements(By.CSS_SELECTOR, f'#jobs-body tr[data-id="{job_id}"]')
    return found[0] if found else None


def cell(driver, job_id: int, css: str) -> str:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    try:
        tr = row(driver, job_id)
        return tr.find_element(By.CSS_SELECTOR, css).text if tr is not None else ""
    except StaleElementReferenceException:   # the row was just replaced by an event
        return ""


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def open_dashboard(driver, daemon, path: str = "/ui") -> None:
    driver.get(daemon.url(path))
    wait(driver, lambda d: text_of(d, "live") == "live", "the event stream to connect")
    wait(driver, lambda d: text_of(d, "whoami") not in ("", "…"), "whoami")


def submit_id(output: str) -> int:
    # gbatch prints "Submitted batch job N (name)".
    return int(output.split("job", 1)[1].split()[0])


PRINTER = "for i in $(seq 1 600); do echo \"tick $i\"; sleep 0.2; done\n"


def _gpus_with_a_foreign_holder(holder_pid: int) -> str:
    """Three simulated 80 GB GPUs, GPU 2 held by a foreign process (when this daemon can
    simulate GPU usage), so the picture shows memory and utilisation bars."""
    import importlib.util
    if importlib.util.find_spec("gflow.gpu_sim") is None:
        return "3"
    return f"3:80G;2=30G@{holder_pid}%85"


def test_owner_sees_jobs_live_follows_the_log_and_cancels(daemon_factory, browser):
    import subprocess
    holder = subprocess.Popen(["sleep", "600"])
    try:
        daemon = daemon_factory(fake_gpus=_gpus_with_a_foreign_holder(holder.pid))
        daemon.start()
        _owner_scenario(daemon, browser)
    finally:
        holder.kill()
        holder.wait()


def _owner_scenario(daemon, browser):
    me = getpass.getuser()
    env = {**daemon.env, "USER": me}
    open_dashboard(browser, daemon)
    assert me in text_of(browser, "whoami")
    assert not browser.find_elements("css selector", "#jobs-body tr")

    script = daemon.home / "printer.sh"
    script.write_text("#!/bin/bash\n" + PRINTER)
    job = submit_id(daemon.ok("gbatch", "--gpus", "1", "--project", "vision", "-J", "train",
                              str(script), env=env))
    # It appears without a reload (the page was loaded before the job existed).
    wait(browser, lambda d: row(d, job) is not None, f"job {job} to appear")
    wait(browser, lambda d: cell(d, job, "td.state-cell") == "R", f"job {job} to run")
    # The GPU it holds names it.
    wait(browser, lambda d: f"job {job}" in text_of(d, "gpus"), "GPU 0 to show its holder")

    # A few more jobs, so the screenshot shows a queue: one waiting, one held, one failed.
    waiting = submit_id(daemon.ok("gbatch", "--gpus", "2", "-J", "big-sweep",
                                  "--project", "nlp", "sleep", "300", env=env))
    held = submit_id(daemon.ok("gbatch", "--gpus", "2", "-J", "eval", "sleep", "300", env=env))
    daemon.ok("gjob", "hold", str(held), env=env)
    failed = submit_id(daemon.ok("gbatch", "-J", "broken", "bash", "-c",
                                 "echo oops; exit 3", env=env))
    daemon.wait_state(failed, "Failed")
    wait(browser, lambda d: cell(d, held, "td.state-cell") == "H", "the held job")
    wait(browser, lambda d: cell(d, failed, "td.state-cell") == "F", "the failed job")
    wait(browser, lambda d: cell(d, waiting, "td.state-cell") == "PD", "the waiting job")
    assert "exit code 3" in cell(browser, failed, "td.reason")

    # The owner gets buttons: hold and cancel on the queued job, release on the held one.
    acts = lambda j: [b.get_attribute("data-action") for b in  # noqa: E731
                      row(browser, j).find_elements("css selector", "button.act")]
    assert acts(waiting) == ["cancel", "hold"]
    assert acts(held) == ["cancel", "release"]
    assert acts(failed) == []

    # Filters narrow the table without a reload.
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element("id", "f-project")).select_by_value("vision")
    wait(browser, lambda d: len(d.find_elements("css selector", "#jobs-body tr")) == 1,
         "the project filter")
    Select(browser.find_element("id", "f-project")).select_by_value("")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.execute_script("document.activeElement.blur()")
    time.sleep(1.2)                        # one tick of the running times
    browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000

    # The job page: details, and a log tail that grows while the job prints.
    row(browser, job).find_element("css selector", "td.name a").click()
    wait(browser, lambda d: d.find_element("id", "job-view").is_displayed(), "the job page")
    assert browser.current_url.endswith(f"/ui/jobs/{job}")
    details = text_of(browser, "job-details")
    assert "vision" in details and str(script) in details
    wait(browser, lambda d: "tick 3" in text_of(d, "log"), "the log to show output")
    first = text_of(browser, "log")
    last_tick = int(first.strip().split("tick")[-1])
    wait(browser, lambda d: f"tick {last_tick + 5}" in text_of(d, "log"),
         "the log tail to grow")
    if os.environ.get("GFLOW_UI_SHOTS"):   # a look at the job page while debugging
        browser.save_screenshot(os.path.join(os.environ["GFLOW_UI_SHOTS"], "job.png"))
    assert text_of(browser, "log").startswith(first), "the tail only appends"

    # Cancel from the job page: the first click arms the button, the second sends it.
    button = browser.find_element("css selector", "#job-actions button.act-cancel")
    button.click()
    wait(browser, lambda d: "confirm" in d.find_element(
        "css selector", "#job-actions button.act-cancel").text, "the armed button")
    browser.find_element("css selector", "#job-actions button.act-cancel").click()
    wait(browser, lambda d: text_of(d, "job-state") == "Cancelled", "the job to be cancelled")
    assert daemon.job(job)["state"] == "Cancelled"
    assert "Cancelled by its owner" in text_of(browser, "job-why")
    assert not browser.find_elements("css selector", "#job-actions button.act")

    # Back to the queue (history), where the row changed in place.
    browser.back()
    wait(browser, lambda d: cell(d, job, "td.state-cell") == "CA", "the row to say CA")
    assert console_errors(browser) == []


def test_another_account_gets_a_read_only_page(daemon_factory, browser, tmp_path):
    # With no socket tables the daemon cannot tell who a TCP caller is: the browser is
    # "someone else" (anonymous), while gbatch on the Unix socket is still identified.
    tables = tmp_path / "no-tables"
    tables.mkdir()
    d = daemon_factory(fake_gpus="2", extra_env={"GFLOW_PEER_TABLES": str(tables)})
    d.start()
    open_dashboard(browser, d)
    assert "read-only" in text_of(browser, "whoami")
    queued = submit_id(d.ok("gbatch", "--gpus", "2", "sleep", "300"))
    running = submit_id(d.ok("gbatch", "sleep", "300"))
    wait(browser, lambda b: row(b, queued) is not None and row(b, running) is not None,
         "both jobs to appear")
    wait(browser, lambda b: cell(b, running, "td.state-cell") == "R", "the running job")
    assert not browser.find_elements("css selector", "#jobs-body button.act")
    browser.get(d.url(f"/ui/jobs/{running}"))
    wait(browser, lambda b: text_of(b, "job-state") == "Running", "the job page")
    assert not browser.find_elements("css selector", "#job-actions button.act")
    assert console_errors(browser) == []
    # And the daemon, not the page, is what refuses: the same request from here is a 403.
    status, body = d.http("POST", f"/jobs/{running}/cancel", body={})
    assert status == 403 and "anonymous" in body["error"]
    assert d.job(running)["state"] == "Running"


def test_a_thousand_jobs_stay_responsive(daemon, browser):
    # 1,000 jobs that can never start (3 GPUs on a 2-GPU box): no processes, all queued.
    jobs = [{"command": f"train --seed {i}", "gpus": 3, "run_dir": str(daemon.home),
             "submitted_by": "alice" if i % 3 else "bob", "project": f"p{i % 4}"}
            for i in range(1000)]
    status, body = daemon.http("POST", "/jobs/batch", body=jobs, timeout=120)
    assert status == 201, body
    started = time.monotonic()
    open_dashboard(browser, daemon)
    wait(browser, lambda b: "of 1000" in text_of(b, "count"), "the first rows", timeout=30)
    loaded = time.monotonic() - started
    rows = len(browser.find_elements("css selector", "#jobs-body tr"))
    assert rows <= 400, f"{rows} rows rendered at once: the table must fill in as it scrolls"
    # A new job shows up at the top quickly, touching one row, not re-rendering them all.
    browser.execute_script("document.getElementById('jobs-body').firstChild.dataset.mark = 'x'")
    t0 = time.monotonic()
    new = daemon.http("POST", "/jobs", body={"command": "sleep 1", "gpus": 3,
                                             "run_dir": str(daemon.home)})[1]["id"]
    wait(browser, lambda b: row(b, new) is not None, "the new job", timeout=15)
    appeared = time.monotonic() - t0
    marked = browser.execute_script(
        "return document.querySelectorAll('#jobs-body tr[data-mark=\"x\"]').length")
    assert marked == 1, "existing rows were rebuilt for one event"
    # Scrolling to the end adds the next rows.
    browser.execute_script("document.getElementById('more').scrollIntoView()")
    wait(browser, lambda b: len(b.find_elements("css selector", "#jobs-body tr")) > rows,
         "more rows on scrolling")
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element("id", "f-user")).select_by_value("bob")
    wait(browser, lambda b: "of 334" in text_of(b, "count"), "the user filter")
    assert console_errors(browser) == []
    timings = {"load_s": round(loaded, 2), "event_to_row_s": round(appeared, 2)}
    print("dashboard with 1000 jobs:", json.dumps(timings))
    assert loaded < 15 and appeared < 5, timings


def test_dashboard_files_are_vendored_and_safe(daemon):
    status, page = daemon.http("GET", "/ui")
    assert status == 200 and "<html" in page
    assert "http://" not in page and "https://" not in page, "nothing from the internet"
    for name in ("dashboard.js", "jobview.js", "dashboard.css"):
        text = (REPO / "gflow" / "api" / "ui" / "static" / name).read_text()
        assert "https://" not in text and "http://" not in text
        assert "innerHTML" not in text, "job text must never become markup"
    import urllib.request
    with urllib.request.urlopen(daemon.url("/ui")) as resp:
        csp = resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    status, who = daemon.http("GET", "/ui/whoami")
    assert status == 200 and who["user"] == getpass.getuser() and who["admin"] is True
    # Log slices: a queued job has none yet (200, not a console-filling 404).
    queued = daemon.http("POST", "/jobs", body={"command": "true", "gpus": 3,
                                                "run_dir": str(daemon.home)})[1]["id"]
    status, body = daemon.http("GET", f"/ui/api/jobs/{queued}/log")
    assert status == 200 and body["available"] is False
    status, body = daemon.http("GET", f"/ui/api/jobs?ids={queued}")
    assert status == 200 and [j["id"] for j in body] == [queued]


class _NoScheduler:
    """whoami needs no scheduler: it reports the connection's verified caller."""
    class Unavailable(Exception):
        pass

    def request(self, op, payload=None, timeout=30, caller=None):
        raise self.Unavailable("no scheduler in this test")


@pytest.mark.parametrize("admins, expect_admin", [((), False), (("carol",), True)])
def test_whoami_tells_owners_from_admins(admins, expect_admin):
    # Not a browser test: the page shows buttons on others' jobs only when this says admin.
    from dataclasses import replace

    from gflow.api.app import create_app
    from gflow.config import Config, SecurityConfig
    config = replace(Config(), security=SecurityConfig(admins=admins))
    app = create_app(_NoScheduler(), config=config)
    client = app.test_client()
    client.environ_base["gflow.caller"] = {"uid": 4242, "user": "carol", "groups": ["lab"],
                                           "via": "tcp"}
    who = client.get("/ui/whoami").get_json()
    assert who["user"] == "carol" and who["read_only"] is False
    assert who["admin"] is expect_admin
    client.environ_base.pop("gflow.caller")
    anon = client.get("/ui/whoami").get_json()
    assert anon["anonymous"] and anon["read_only"] and not anon["admin"]
