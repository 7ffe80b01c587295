"""/api/schema/ generated once per process: drf-spectacular builds it per request otherwise.

The schema describes the code, which does not change while a process runs, and it is public
(SERVE_PUBLIC, no login), so one rendering per format serves every caller. Whatever a request
adds (`?version=`, `?lang=`, an Accept with parameters) picks among the four renderers at
most; it never makes another schema, so no query string can make a request cost a build.
"""

from __future__ import annotations

import threading

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request

_rendered: dict[type, tuple[bytes, str, str]] = {}
_building = threading.Lock()


class CachedSpectacularAPIView(SpectacularAPIView):
    """SpectacularAPIView with the rendered schema kept per renderer, for this process."""

    @extend_schema(exclude=True)
    def get(self, request: Request, *args, **kwargs) -> HttpResponse:
        renderer = request.accepted_renderer
        cached = _rendered.get(type(renderer))
        if cached is None:
            with _building:
                cached = _rendered.get(type(renderer))
                if cached is None:
                    cached = self._render(request)
                    _rendered[type(renderer)] = cached
        body, content_type, disposition = cached
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = disposition
        return response

    def _get_version_parameter(self, request: Request) -> None:
        return None  # the API has one version: `?version=` names no other schema

    def _render(self, request: Request) -> tuple[bytes, str, str]:
        """Build the schema (in the default language: `?lang=` is not looked at) and render
        it as negotiated."""
        response = self._get_schema_response(request)
        renderer = request.accepted_renderer
        body = renderer.render(response.data, renderer.media_type, {"request": request})
        content_type = renderer.media_type
        if renderer.charset:
            content_type += f"; charset={renderer.charset}"
        return body, content_type, response["Content-Disposition"]


def forget_rendered_schema() -> None:
    """For tests that change the URLs or settings the schema is built from."""
    _rendered.clear()
