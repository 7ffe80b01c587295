"""The backend seam: the database operations of the run path, behind one interface
(signing.backends.base.Backend), with PostgreSQL's implementation (postgresql.py) and
embedded mode's SQLite one (sqlite.py) side by side.

The implementation is chosen once per process, from settings.SIGNING_DATABASE_BACKEND (a
dotted class path, as Django's EMAIL_BACKEND is; settings derive it from SIGNING_EMBEDDED).
No module outside this package asks which database it runs on. (Not SIGNING_BACKEND:
Django's cookie signing owns that name.)

It lives in signing, the top app, and not in keyring or records: its operations write the
three apps' tables in one transaction (a lease and its batch's claim; a batch's
signatures and its move to signed), so only the app that may import all three can hold
them. keyring.services takes the keyring lock and clock through the same setting, by
name, as Django's mail takes its backend: keyring imports nothing of signing.
"""

from __future__ import annotations

from typing import cast

from kernel.seam import configured_backend
from signing.backends.base import Backend


def backend() -> Backend:
    """The backend settings name, made once per process (kernel.seam)."""
    return cast(Backend, configured_backend())
