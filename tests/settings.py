"""Test settings: the real services, on a Redis database and a KEK of the tests' own.

Set before the project settings are read, so worker processes that the tests start
inherit the same environment (the database name is added when they start).
"""

import os

from keyring.sealing import generate_kek

os.environ.setdefault("BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SIGNING_KEK", generate_kek())
os.environ.setdefault("SIGNING_LEASE_TTL", "30")

from signing_site.settings import *  # noqa: F403
