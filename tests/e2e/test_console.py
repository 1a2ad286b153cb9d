"""The web console in a real headless browser (Debian's chromium, driven by playwright) against ``srdb
local``'s HTTP API: a query typed and run with Ctrl-Enter, its rows read from the table; a long query seen
RUNNING, cancelled, seen CANCELLED; a database's history. ``CONSOLE_SCREENSHOT=path`` keeps a screenshot
(the README's is made so: docs/console.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.settings import read_env_file

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What this machine's closed network needs: no background connections, no first-run work.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def run(page: Any, sql: str) -> Any:
    """Type SQL, run it with Ctrl-Enter, and wait for its job's row to reach a final state."""
    before = page.text_content("#job")
    page.fill("#sql", sql)
    page.press("#sql", "Control+Enter")
    page.wait_for_function("(before) => document.querySelector('#job').textContent.startsWith('job ') && "
                           "document.querySelector('#job').textContent !== before", arg=before)
    job_id = page.text_content("#job").removeprefix("job ")
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    row.wait_for()
    page.wait_for_function(f"""['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(
        document.querySelector('#jobs tr[data-job="{job_id}"]').dataset.state)""", timeout=30_000)
    page.locator(f'#result[data-job="{job_id}"]').wait_for(state="attached")  # its result is on the page
    return row


def test_the_console_runs_queries_shows_rows_and_cancels_a_running_job(stack: Path, browser: Any,
                                                                       tmp_path: Path) -> None:
    url = read_env_file(stack / ".srdb" / "local.env")["SRDB_HTTP_URL"]
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.goto(url)
    page.fill("#database", "console")
    for sql in ("CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT, price REAL)",
                "INSERT INTO fruit (name, price) VALUES ('pear', 1.25), ('fig', NULL), ('kiwi', 0.5)"):
        assert run(page, sql).get_attribute("data-state") == "SUCCEEDED"
    assert run(page, "SELECT id, name, price FROM fruit ORDER BY id").get_attribute("data-state") == "SUCCEEDED"
    headers = page.locator("#result thead th").all_inner_texts()
    assert [h.split("\n") for h in headers] == [["id", "INTEGER"], ["name", "TEXT"], ["price", "REAL"]]
    rows = [page.locator("#result tbody tr").nth(i).locator("td").all_inner_texts() for i in range(3)]
    assert rows == [["1", "pear", "1.25"], ["2", "fig", "NULL"], ["3", "kiwi", "0.5"]]
    assert "3 row(s)" in page.text_content("#summary")

    bad = run(page, "SELECT * FROM nowhere")
    assert bad.get_attribute("data-state") == "FAILED"
    assert page.text_content("#error").startswith("SqlError: ") and "no such table" in page.text_content("#error")

    page.fill("#sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
    page.click("#run")
    page.wait_for_function("""[...document.querySelectorAll('#jobs tr')].some(tr => tr.dataset.state === 'RUNNING')""",
                           timeout=30_000)
    running = page.locator('#jobs tr[data-state="RUNNING"]')
    running.locator("button.cancel").click()
    page.wait_for_function("document.querySelector('#jobs tbody tr').dataset.state === 'CANCELLED'",
                           timeout=30_000)

    page.click("#refresh")
    page.locator("#databases tr.pick", has_text="console").click()
    page.locator("#history li").first.wait_for()
    assert "INSERT INTO fruit" in page.locator("#history li").first.inner_text()
    shot = Path(os.environ.get("CONSOLE_SCREENSHOT") or tmp_path / "console.png")
    run(page, "SELECT id, name, price FROM fruit ORDER BY id")
    page.locator("#history li").first.wait_for()  # the history is drawn again after each run
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
