"""The viewer in a real headless browser (Debian's chromium, driven by Selenium).

The page loads, lists the sessions, draws a fork, and a record appended after
load appears without a reload. Skipped only off CI when chromium is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal import open_journal
from journal.web import create_app

from ._web_helpers import running

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ON_CI = os.environ.get("CI", "").lower() in ("true", "1")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not ON_CI,
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM and CHROMEDRIVER, "CI must install chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: webdriver.Chrome, css: str, count: int = 1) -> list[object]:
    def found(d: webdriver.Chrome) -> list[object] | bool:
        nodes = d.find_elements(By.CSS_SELECTOR, css)
        return nodes if len(nodes) >= count else False

    return WebDriverWait(driver, 20).until(found)


async def test_viewer_shows_sessions_a_fork_and_live_records(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    async with open_journal(tmp_path) as writer:
        for n in range(4):
            await writer.record("chat-1", "message", {"n": n})
        await writer.create_branch("chat-1", "retry", fork_sequence=2)
        await writer.record("chat-1", "message", {"n": "retry"}, branch_id="retry")
        await writer.record("chat-2", "note", {})
        async with (
            open_journal(tmp_path, read_only=True) as reader,
            running(create_app(reader, token="t0k")) as url,
        ):
            await asyncio.to_thread(browser.get, f"{url}/?token=t0k")
            await asyncio.to_thread(_wait, browser, "#sessions li[data-session]", 2)
            item = browser.find_element(By.CSS_SELECTOR, '#sessions li[data-session="chat-1"]')
            await asyncio.to_thread(item.click)
            await asyncio.to_thread(_wait, browser, 'svg path.fork[data-fork="retry"]')
            await asyncio.to_thread(_wait, browser, "#timeline tr[data-seq]", 4)
            # Appended by another process's writer after the page loaded.
            await writer.record("chat-1", "tool_call", {"name": "search"})
            await asyncio.to_thread(_wait, browser, '#timeline tr[data-seq="5"]')
            row = browser.find_element(By.CSS_SELECTOR, '#timeline tr[data-seq="5"]')
            assert "tool_call" in row.text
            await asyncio.to_thread(row.click)
            assert '"tool_call"' in browser.find_element(By.ID, "record").text
