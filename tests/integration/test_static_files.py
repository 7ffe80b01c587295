"""A checkout (make serve, the tests, gunicorn started by hand) serves its static files
through the app itself, by their plain names, with no collectstatic first."""

from django.conf import settings
from django.templatetags.static import static


def test_a_checkout_serves_static_files_by_plain_name_without_collectstatic(client):
    assert not settings.SIGNING_COLLECTED_STATIC
    assert static("signing/run.js") == "/static/signing/run.js"
    # WhiteNoise, a middleware, answers before any view (the test client has no static
    # handler of its own), from the app's folder and whether or not STATIC_ROOT exists.
    response = client.get("/static/signing/run.js")
    assert response.status_code == 200
    assert b"progress" in b"".join(response.streaming_content)
    swagger = client.get(static("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"))
    assert swagger.status_code == 200


def test_browsers_find_a_favicon_at_the_root(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\x00\x00\x01\x00")  # an icon
