"""The database seam settings name (SIGNING_DATABASE_BACKEND), made once per process.

signing.backends implements it and hands it out typed (`backend()`); keyring asks it for
the keyring lock and clock only. Both take this one instance, so the choice is made, and the
class built, once.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string


@cache
def configured_backend() -> object:
    """An instance of the class settings.SIGNING_DATABASE_BACKEND names."""
    return import_string(settings.SIGNING_DATABASE_BACKEND)()
