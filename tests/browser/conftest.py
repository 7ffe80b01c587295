"""The browser tests' cast: Debian's Chromium driven by Playwright, and an operator."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = ARTIFACTS / "browser"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between page actions are plain synchronous code, so Django may allow them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def operator(transactional_db):
    return get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)


def log_in(page, base_url: str) -> None:
    page.goto(base_url + "/")
    assert "/accounts/login/" in page.url  # anonymous visitors are sent to log in
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


def start_a_run_and_watch_it_finish(
    page, *, batch_size: int, records: str, then: Callable[[], object] | None = None
) -> None:
    """From the dashboard: start a run; its page must follow it to the end by itself.

    `then` (starting the workers, say) is called once the page shows the run at 0%, so the
    page is seen to move on its own, not only to load a finished run.
    """
    from playwright.sync_api import expect

    page.fill("#id_batch_size", str(batch_size))
    page.click("text=Start signing")
    page.wait_for_url("**/runs/*/")
    if then is not None:
        expect(page.locator('[data-field="percent"]')).to_have_text("0%", timeout=10_000)
        then()
    expect(page.locator('[data-field="percent"]')).to_have_text("100%", timeout=60_000)
    expect(page.locator('#run [data-field="status"]')).to_have_text("completed")
    expect(page.locator('[data-field="signed_records"]')).to_have_text(records)
