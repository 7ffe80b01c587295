"""The OpenAPI schema is valid and served cached; schemathesis runs over it in tests/contract."""

import re

import pytest
from django.test import RequestFactory
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView

from signing.api.schema import CachedSpectacularAPIView, forget_rendered_schema


def test_the_schema_is_valid_openapi(client):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200


@pytest.mark.parametrize("page", ["/api/redoc/", "/api/docs/"])
def test_the_api_docs_pages_load_nothing_from_another_site(client, page):
    # The README promises no CDN: drf-spectacular's Redoc page links Google Fonts, which
    # templates/drf_spectacular/redoc.html leaves out.
    html = client.get(page).content.decode()

    assert "://" not in html
    linked = re.findall(r"""(?:src|href)=["']([^"']*)""", html)
    assert linked, html
    assert all(url.startswith("/static/") for url in linked), linked


class CountingGenerator(SchemaGenerator):
    builds = 0

    def get_schema(self, *args, **kwargs):
        CountingGenerator.builds += 1
        return super().get_schema(*args, **kwargs)


@pytest.fixture
def counted_builds(monkeypatch):
    """The schema view's generator, counting its builds; nothing rendered before the test."""
    forget_rendered_schema()
    CountingGenerator.builds = 0
    monkeypatch.setattr(CachedSpectacularAPIView, "generator_class", CountingGenerator)
    yield CountingGenerator
    forget_rendered_schema()


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("application/vnd.oai.openapi", "application/vnd.oai.openapi"),
        ("application/json", "application/json"),
        ("application/vnd.oai.openapi+json", "application/vnd.oai.openapi+json"),
    ],
)
def test_the_schema_is_built_once_per_process_and_served_as_drf_spectacular_would(
    client, db, counted_builds, accept, media_type
):
    first = client.get("/api/schema/", HTTP_ACCEPT=accept)
    assert first.status_code == 200
    assert first["Content-Type"].startswith(media_type)
    for query in ("", "?version=2", "?lang=de", "?lang=xx&version=zz"):
        again = client.get(f"/api/schema/{query}", HTTP_ACCEPT=accept)
        assert again.status_code == 200, query
    assert counted_builds.builds == 1

    reference = SpectacularAPIView.as_view()(
        RequestFactory().get("/api/schema/", HTTP_ACCEPT=accept)
    )
    reference.render()
    assert first.content == reference.content
    assert first["Content-Type"] == reference["Content-Type"]
    assert first["Content-Disposition"] == reference["Content-Disposition"]
    assert b"/api/runs/{id}/leases/" in first.content
