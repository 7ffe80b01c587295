"""A follow run's page shows its latest checkpoint live, as workers sign it (Chromium)."""

import random

import pytest

from records.services import random_payloads
from signing.models import Checkpoint
from signing.runs.follow import records_arrived, start_follow_run, stop_run
from signing.runs.seeding import load_records
from tests.browser.conftest import SCREENSHOTS, log_in
from tests.conftest import seed, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.workers]


def test_the_run_page_shows_the_latest_checkpoint_as_it_is_signed(
    browser, live_server, operator, start_workers, worker_env
):
    from playwright.sync_api import expect

    # Given workers that checkpoint every 2 batches, and a follow run's page open
    worker_env.update(
        {"SIGNING_FOLLOW_CHECKPOINT_BATCHES": "2", "SIGNING_FOLLOW_MAX_WAIT_MS": "50"}
    )
    seed(records=0, keys=4)
    start_workers(processes=1, threads=2).wait_ready()
    run = start_follow_run(batch_size=5)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    shown = page.get_by_test_id("checkpoint").locator('[data-field="checkpoint"]')
    expect(shown).to_have_text("\u2013")  # an en dash: none yet

    # When 30 records arrive (6 batches: checkpoints at 2, 4 and 6)
    load_records(random_payloads(30, rng=random.Random(6)))
    records_arrived()
    latest = wait_until(lambda: Checkpoint.objects.filter(run=run, batches=6).first())

    # Then the page, polling, shows the latest: its batches, root and key
    expect(shown).to_contain_text("6 batches", timeout=10_000)
    expect(shown).to_contain_text(bytes(latest.merkle_root).hex())
    expect(shown).to_contain_text(latest.key.kid)
    page.screenshot(path=SCREENSHOTS / "follow-run-checkpoint.png", full_page=True)
    page.close()
    stop_run(run.pk)
