"""The dashboard in Debian's Chromium, driven by Playwright, against real workers."""

import pytest

from records.models import Signature
from signing.models import SigningRun
from tests.browser.conftest import SCREENSHOTS, log_in, start_a_run_and_watch_it_finish
from tests.conftest import seed

pytestmark = [pytest.mark.browser, pytest.mark.workers]


def test_an_operator_starts_a_run_and_watches_it_finish(
    browser, live_server, operator, start_workers
):
    from playwright.sync_api import expect

    seed(records=5_000, keys=20)
    start_workers(processes=2, threads=4)
    page = browser.new_page(viewport={"width": 1366, "height": 900})

    log_in(page, live_server.url)
    expect(page.get_by_test_id("records-total")).to_have_text("5,000")

    # A bad batch size is refused inline and starts nothing
    page.fill("#id_batch_size", "0")
    page.click("text=Start signing")
    expect(page.get_by_test_id("batch-size-error")).to_contain_text("at least 1")
    page.screenshot(path=SCREENSHOTS / "dashboard-bad-input.png", full_page=True)
    assert not SigningRun.objects.exists()

    # A good one starts the run, and the page follows it to the end by itself
    start_a_run_and_watch_it_finish(page, batch_size=500, records="5,000")
    expect(page.get_by_test_id("audit")).to_contain_text("passed", timeout=60_000)
    expect(page.get_by_test_id("audit").locator("li.fail")).to_have_count(0)

    # The timeline draws one bar per lease: 10 batches, no failures
    expect(page.locator("[data-testid=timeline] rect.lease")).to_have_count(10, timeout=10_000)
    expect(page.locator("[data-testid=timeline] rect.lease.expired")).to_have_count(0)
    expect(page.locator("[data-testid=throughput] polyline")).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "run-finished-laptop.png", full_page=True)
    assert Signature.objects.count() == 5_000

    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=SCREENSHOTS / "run-finished-phone.png", full_page=True)

    page.set_viewport_size({"width": 1366, "height": 900})
    page.click("text=Keys")
    expect(page.get_by_test_id("keys").locator("tbody tr")).to_have_count(20)
    expect(page.locator("body")).not_to_contain_text("PRIVATE KEY")
    page.screenshot(path=SCREENSHOTS / "keys.png", full_page=True)
    page.close()


def test_a_second_run_is_refused_while_one_is_active(browser, live_server, operator):
    from playwright.sync_api import expect

    from signing.runs.dispatch import plan_run

    seed(records=100, keys=2)
    active = plan_run(batch_size=10)
    page = browser.new_page()
    log_in(page, live_server.url)
    page.fill("#id_batch_size", "10")
    page.click("text=Start signing")
    expect(page.get_by_test_id("form-error")).to_contain_text(f"Run {active.pk} is still active")
    assert SigningRun.objects.count() == 1
    page.close()
