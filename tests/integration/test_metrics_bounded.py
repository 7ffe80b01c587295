"""What a scrape of /metrics may cost: cached for a few seconds, refused before any query from
outside the allowed networks or without the token (issue 15)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from django.test import RequestFactory

from records.models import Record
from signing.ops import metrics
from signing.ops.metrics import metrics_view
from tests.conftest import run_together, seed, wait_until
from tests.support import manage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]

QUERIES_PER_SCRAPE = 5  # test_metrics.py: test_a_scrape_costs_the_same_few_queries…


def scrape_from(address: str, **headers: str):
    return metrics_view(RequestFactory().get("/metrics", REMOTE_ADDR=address, **headers))


def signed_total(response) -> float:
    for line in response.content.decode().splitlines():
        if line.startswith("signing_records "):
            return float(line.split()[1])
    raise AssertionError("no signing_records line")


class CountedCollections:
    """Counts how many times the real collector ran (each is one set of queries)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = metrics.SigningCollector.collect

        def collect(collector):
            self.count += 1
            yield from real(collector)

        monkeypatch.setattr(metrics.SigningCollector, "collect", collect)


def test_a_burst_of_scrapes_costs_one_set_of_queries(settings, django_assert_num_queries):
    settings.SIGNING_METRICS_CACHE_SECONDS = 60
    seed(records=7, keys=1)
    with django_assert_num_queries(QUERIES_PER_SCRAPE):
        bodies = {scrape_from("127.0.0.1").content for _ in range(50)}
    assert len(bodies) == 1
    assert signed_total(scrape_from("127.0.0.1")) == 7


def test_scrapes_arriving_together_compute_the_figures_once(
    settings, monkeypatch, transactional_db
):
    settings.SIGNING_METRICS_CACHE_SECONDS = 60
    seed(records=3, keys=1)
    collections = CountedCollections(monkeypatch)
    responses = run_together(*[lambda: scrape_from("10.1.2.3")] * 8)
    assert {r.status_code for r in responses} == {200}
    assert {signed_total(r) for r in responses} == {3}
    assert collections.count == 1


def test_a_scrape_after_the_interval_sees_new_rows(settings):
    settings.SIGNING_METRICS_CACHE_SECONDS = 1
    seed(records=4, keys=1)
    assert signed_total(scrape_from("127.0.0.1")) == 4
    Record.objects.create(payload="one more")
    assert signed_total(scrape_from("127.0.0.1")) == 4  # cached
    wait_until(lambda: signed_total(scrape_from("127.0.0.1")) == 5, timeout=10)


def test_no_cache_computes_every_scrape(settings, monkeypatch):
    settings.SIGNING_METRICS_CACHE_SECONDS = 0
    collections = CountedCollections(monkeypatch)
    for _ in range(3):
        scrape_from("127.0.0.1")
    assert collections.count == 3


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.0.0.8", "172.20.0.1", "192.168.1.50", "::ffff:10.0.0.8"]
)
def test_loopback_and_private_networks_may_scrape_by_default(address):
    assert scrape_from(address).status_code == 200


@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::1", "::ffff:8.8.8.8", ""])
def test_other_addresses_get_403_and_run_no_query(address, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = scrape_from(address)
    assert response.status_code == 403
    assert b"signing_" not in response.content


def test_a_star_lets_any_address_scrape(settings):
    settings.SIGNING_METRICS_ALLOWED_NETWORKS = "*"
    assert scrape_from("203.0.113.7").status_code == 200


def test_a_token_is_required_once_set(settings, django_assert_num_queries):
    settings.SIGNING_METRICS_TOKEN = "s3cret-scrape-token"
    with django_assert_num_queries(0):
        missing = scrape_from("127.0.0.1")
        wrong = scrape_from("127.0.0.1", HTTP_AUTHORIZATION="Bearer not-it")
        basic = scrape_from("127.0.0.1", HTTP_AUTHORIZATION="Basic s3cret-scrape-token")
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused["WWW-Authenticate"].startswith("Bearer")
        assert b"s3cret" not in refused.content
    granted = scrape_from("127.0.0.1", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert granted.status_code == 200
    assert b"signing_records " in granted.content


def test_the_token_does_not_open_a_network_that_is_not_allowed(settings):
    settings.SIGNING_METRICS_TOKEN = "s3cret-scrape-token"
    outside = scrape_from("203.0.113.7", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert outside.status_code == 403


def test_over_real_http_the_client_address_decides(settings, live_server):
    """The live server sees 127.0.0.1: refused when only 10/8 may scrape, then let in."""

    def status_of(**headers: str) -> int:
        request = urllib.request.Request(f"{live_server.url}/metrics", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    settings.SIGNING_METRICS_ALLOWED_NETWORKS = "10.0.0.0/8"
    assert status_of() == 403
    settings.SIGNING_METRICS_ALLOWED_NETWORKS = "10.0.0.0/8, 127.0.0.0/8"
    settings.SIGNING_METRICS_TOKEN = "s3cret-scrape-token"
    assert status_of() == 401
    assert status_of(Authorization="Bearer s3cret-scrape-token") == 200


def test_a_malformed_network_stops_the_process_at_start():
    result = manage(
        {"SIGNING_METRICS_ALLOWED_NETWORKS": "127.0.0.1/8,not-a-network"}, "check", timeout=60
    )
    assert result.returncode != 0
    assert "SIGNING_METRICS_ALLOWED_NETWORKS" in result.stderr
