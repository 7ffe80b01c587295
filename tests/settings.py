"""Test settings: the real services, on a Redis database and a KEK of the tests' own.

Set before the project settings are read, so worker processes that the tests start
inherit the same environment (the database name is added when they start).
"""

import os
import secrets

from keyring.sealing import generate_kek

os.environ.setdefault("BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SIGNING_KEK", generate_kek())
os.environ.setdefault("SIGNING_LEASE_TTL", "30")
# A key fit to serve with: tests load the WSGI app (signing_site.wsgi), which refuses the
# development default with DEBUG off.
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))

from signing_site.settings import *  # noqa: F403

# Two test sessions at once (two developers, or a developer and a helper) each need their
# own test database: set SIGNING_TEST_DATABASE to pick another name.
_test_database = os.environ.get("SIGNING_TEST_DATABASE")
if SIGNING_EMBEDDED:  # noqa: F405  (SIGNING_EMBEDDED=1: the same tests on SQLite)
    if _test_database:
        DATABASES["default"]["TEST"]["NAME"] = (  # noqa: F405
            SIGNING_BACKENDS.sqlite_path.with_name(f"{_test_database}.sqlite3")  # noqa: F405
        )
else:
    DATABASES["default"]["TEST"]["NAME"] = (  # noqa: F405
        _test_database or f"test_{DATABASES['default']['NAME']}"  # noqa: F405
    )

# Passwords hashed by Django's PBKDF2 at 1,000 rounds instead of its million (0.4 s of a core
# each, and the suite hashes hundreds of times: every user a fixture creates with a password,
# every login, every failed one, as schemathesis sends to /api/auth/token/).
# The same algorithm and format, so the hashes stay interchangeable with processes on the
# project settings (a worker, `serve`, gunicorn): PBKDF2 reads the rounds from each hash.
PASSWORD_HASHERS = ["tests.hashers.FewRoundsPBKDF2PasswordHasher"]
