"""The review app in a real headless Chromium against `streamlit run`: load, give feedback, find the row.

Chromium is driven through the Chrome DevTools Protocol over a websocket (the `websockets`
package comes with Streamlit). Screenshots go to pytest's temporary folder.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from llm_monitoring.feedback import list_feedback
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import get_log
from llm_monitoring_tests.processes import free_port, stop_group, wait_until
from llm_monitoring_tests.test_app import APP, sample_logs, store_logs

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


class Browser:
    """Just enough of the DevTools Protocol: navigate, evaluate, click, type, screenshot."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.websocket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.websocket.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, css: str, text: str = "") -> None:
        """A real mouse click in the middle of the first element matching `css` whose text has `text`."""
        point = self.evaluate(
            f"""(() => {{
                const el = [...document.querySelectorAll({json.dumps(css)})].find(e => e.innerText.includes({json.dumps(text)}));
                if (!el) return null;
                el.scrollIntoView({{block: 'center'}});
                const r = el.getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2];
            }})()"""
        )
        if point is None:
            raise AssertionError(f"nothing matches {css!r} with text {text!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=point[0], y=point[1], button="left", clickCount=1)

    def type_into(self, css: str, text: str) -> None:
        self.click(css)
        self.send("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def page_text(self) -> str:
        return self.evaluate("document.body.innerText")


@pytest.fixture
def chromium() -> str:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Chromium is missing (Debian: apt-get install chromium)")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return path


@pytest.fixture
def streamlit_url(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Database]]:
    database = Database(sqlite_url)
    database.ensure_schema()
    store_logs(database, sample_logs(5))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": sqlite_url}
    log = (tmp_path / "streamlit.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.headless=true",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--browser.gatherUsageStats=false",
            "--server.fileWatcherType=none",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url) or server.poll() is not None, 60, "streamlit to start")
        assert server.poll() is None, (tmp_path / "streamlit.log").read_text()
        yield url, database
    finally:
        stop_group(server)
        log.close()
        database.dispose()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1600,1200",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 30, "Chromium's debugging port")
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(target for target in json.load(response) if target["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as websocket:
            browser = Browser(websocket)
            browser.send("Page.enable")
            yield browser
    finally:
        stop_group(process)


def test_reviewer_gives_feedback_in_a_real_browser(streamlit_url: tuple[str, Database], browser: Browser, tmp_path: Path) -> None:
    url, database = streamlit_url
    newest = max(entry["id"] for entry in [get_log(database, log_id) for log_id in range(1, 6)] if entry)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    browser.send("Page.navigate", url=url)
    wait_until(
        lambda: browser.evaluate(
            "document.querySelectorAll('.st-key-fb_verdict label').length > 0 && !document.querySelector('[data-testid=stSkeleton]')"
        ),
        60,
        "the page with its feedback form",
    )
    browser.screenshot(shots / "1-loaded.png")
    text = browser.page_text()
    assert "LLM Log Monitor" in text
    assert f"Run #{newest}" in text and f"Your feedback on run #{newest}" in text

    browser.click(".st-key-fb_verdict label", "No")
    browser.type_into(".st-key-fb_comments textarea", "Cites the wrong page")
    browser.type_into(".st-key-fb_reviewer input", "browser reviewer")
    browser.screenshot(shots / "2-filled.png")
    browser.click(".st-key-fb_submit button")

    wait_until(lambda: f"saved for run #{newest}" in browser.page_text(), 30, "the confirmation")
    browser.screenshot(shots / "3-saved.png")
    [entry] = list_feedback(database, newest)
    assert (entry.is_good, entry.comments, entry.reviewer) == (False, "Cites the wrong page", "browser reviewer")
    # The confirmation is still there a moment later: nothing reran it away.
    time.sleep(1.0)
    assert f"saved for run #{newest}" in browser.page_text()
    assert all(path.stat().st_size > 0 for path in shots.iterdir())
