"""Error pages and reports that never show the KEK, a database or broker URL, or a password.

Django's own filter hides settings and request.META entries whose names match
API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE, and only with DEBUG off. Here, with DEBUG on or
off (the technical 500 page is where a developer's KEK would show):
- names that match KEK, URL, DSN or CREDENTIAL are hidden too (SIGNING_KEK, DATABASE_URL,
  BROKER_URL, and the `url` of DRAMATIQ_BROKER's options);
- a dataclass setting (SIGNING_BACKENDS, whose fields hold both URLs) is cleansed field by
  field, as a dict would be;
- in any value shown (settings, request.META, a frame's variables, the exception's message),
  the password of a URL (`scheme://user:password@host`) is starred, and so is the value of
  any environment variable whose name says it is secret (SIGNING_KEK,
  DJANGO_SECRET_KEY, DJANGO_SUPERUSER_PASSWORD…), and SECRET_KEY and DATABASES' passwords.
  runserver copies the whole environment into request.META, and a frame's variables may hold
  any of these.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from django.conf import settings
from django.utils.regex_helper import _lazy_re_compile
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# A URL's password: what lies between `user:` and `@` after the scheme.
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s'\"]*:)[^/@\s'\"]+(?=@)", re.I)
# Environment variables whose value is a secret wherever it shows up.
SECRET_NAME = re.compile(r"KEK|KEY|SECRET|PASS|TOKEN|DSN|CREDENTIAL", re.I)
# Shorter values (0, 1, on) are switches, not secrets; starring them would hide nothing.
SHORTEST_SECRET = 8


def secret_values() -> list[str]:
    """The values to star wherever they appear, longest first (a secret within another)."""
    found = {
        value
        for name, value in os.environ.items()
        if SECRET_NAME.search(name) and len(value) >= SHORTEST_SECRET
    }
    found.add(settings.SECRET_KEY)
    found.update(db.get("PASSWORD") or "" for db in settings.DATABASES.values())
    return sorted(
        (value for value in found if len(value) >= SHORTEST_SECRET), key=len, reverse=True
    )


def scrub(text: str, secrets: list[str], substitute: str) -> str:
    """`text` with every URL's password and every known secret value starred."""
    text = URL_PASSWORD.sub(lambda match: match["head"] + substitute, text)
    for secret in secrets:
        text = text.replace(secret, substitute)
    return text


class SecretsHiddenFilter(SafeExceptionReporterFilter):
    hidden_settings = _lazy_re_compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|KEK|URL|DSN|CREDENTIAL", flags=re.I
    )

    def __init__(self) -> None:
        self._secrets: list[str] | None = None

    @property
    def secrets(self) -> list[str]:
        if self._secrets is None:
            self._secrets = secret_values()
        return self._secrets

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets, self.cleansed_substitute)

    def is_active(self, request: Any) -> bool:
        """Django honours sensitive_variables and sensitive_post_parameters (the login
        form's password) only with DEBUG off; here always."""
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        cleansed = super().cleanse_setting(key, value)
        # str() as well: a lazy string (axes has one) passes isinstance but is no str.
        return self.scrub(str(cleansed)) if isinstance(cleansed, str) else cleansed

    def cleanse_special_types(self, request: Any, value: Any) -> Any:
        """A frame's variable: shown as its repr, so a secret anywhere in the repr is starred
        (a local holding the settings' backends, a URL, a connection's parameters)."""
        value = super().cleanse_special_types(request, value)
        try:
            shown = repr(value)
        except Exception as error:  # a broken __repr__ must not break the error page
            return f"<{type(value).__name__}: repr failed with {type(error).__name__}>"
        scrubbed = self.scrub(shown)
        return value if scrubbed == shown else _Shown(scrubbed)


class _Shown:
    """A variable already scrubbed: the error page prints this text as its value."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class SecretsHiddenReporter(ExceptionReporter):
    """The exception's message and notes are shown too: scrub them like everything else."""

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        scrub_text = getattr(self.filter, "scrub", None)  # a request may name another filter
        for name in ("exception_value", "exception_notes"):
            if scrub_text and isinstance(data.get(name), str):
                data[name] = scrub_text(data[name])
        return data
