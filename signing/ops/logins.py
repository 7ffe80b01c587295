"""Brute-force protection of the three login doors: the dashboard's login page, the admin's,
and POST /api/auth/token/ (settings: the "Hardening" block; docs/deployment.md, "Production
settings").

django-axes counts failures in the database, per username and client address together, so
every gunicorn process agrees on the count and nobody can lock a user out from elsewhere.
The login pages answer a locked-out client with `lockout_response` (429 and a page that says
what happened); the token view answers 429 in the API's error shape
(signing.api.views.ObtainExpiringToken).
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class LockoutBackend(AxesStandaloneBackend):
    """axes' backend (first in AUTHENTICATION_BACKENDS), letting authenticate() without a
    request through to the next backend: no client to count there (a shell, the test
    client's login()), and each of the three login doors passes its request."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def cooloff_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_message() -> str:
    return (
        f"Too many failed logins: locked out for {cooloff_minutes()} minutes after the last "
        "attempt. Try again later, or ask an administrator to unlock you."
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    """What the login page and the admin login answer a locked-out client
    (AXES_LOCKOUT_CALLABLE)."""
    return render(
        request,
        "registration/locked_out.html",
        {"message": lockout_message(), "failure_limit": settings.AXES_FAILURE_LIMIT},
        status=429,
    )


def client_address(request: HttpRequest) -> str | None:
    """The client's address (AXES_CLIENT_IP_CALLABLE): behind the TLS proxy, the address the
    proxy appended last to X-Forwarded-For (a client can forge the entries before it, not
    that one); otherwise the peer's address."""
    if settings.SIGNING_BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if forwarded[-1].strip():
            return forwarded[-1].strip()
    return request.META.get("REMOTE_ADDR")
