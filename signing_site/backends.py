"""Which database and broker this process uses: the servers, or embedded mode.

Embedded mode is for a laptop with no PostgreSQL and no Redis: SQLite (WAL, every
transaction BEGIN IMMEDIATE) and Dramatiq's in-process broker, with the workers as threads
of the process that starts a run. The decision, in order:

1. ``SIGNING_EMBEDDED=1`` forces embedded mode; ``SIGNING_EMBEDDED=0`` forbids it.
2. ``DATABASE_URL`` or ``BROKER_URL`` set: the servers, as configured. An explicit URL
   that does not answer is an error where it is first used, never a quiet fall-back: an
   operator who named a server must not find the records signed somewhere else.
3. Neither set: the default local servers, if both accept a connection now; embedded
   mode otherwise, with the reason in one line (`reason`) for commands to print.

Kept free of Django so settings can import it, and tests can call `choose` directly.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/signing"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
PROBE_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Backends:
    embedded: bool
    # Why embedded mode was chosen (empty when it was not): one line for the user.
    reason: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    sqlite_path: Path | None = None


def choose(environ: Mapping[str, str], *, base_dir: Path) -> Backends:
    """Decide from the environment (and, when nothing is configured, a TCP probe)."""
    sqlite_path = Path(
        environ.get("SIGNING_EMBEDDED_DB") or base_dir / ".embedded" / "signing.sqlite3"
    )
    forced = environ.get("SIGNING_EMBEDDED", "").strip()
    if forced not in {"", "0", "1"}:
        raise SystemExit(f"SIGNING_EMBEDDED must be 0 or 1, got {forced!r}")
    if forced == "1":
        return Backends(
            embedded=True, reason="SIGNING_EMBEDDED=1 forces it", sqlite_path=sqlite_path
        )
    database_url = environ.get("DATABASE_URL", "").strip()
    broker_url = environ.get("BROKER_URL", "").strip()
    if urlparse(database_url).scheme.startswith("sqlite"):
        # Without embedded mode's settings (BEGIN IMMEDIATE, WAL), leasing on SQLite would
        # not be serialized; with them, only embedded mode's broker makes sense.
        raise SystemExit(
            "DATABASE_URL cannot name SQLite: set SIGNING_EMBEDDED=1 (and SIGNING_EMBEDDED_DB "
            "for the file) to run on SQLite"
        )
    if database_url or broker_url or forced == "0":
        return Backends(
            embedded=False,
            database_url=database_url or DEFAULT_DATABASE_URL,
            broker_url=broker_url or DEFAULT_BROKER_URL,
        )
    defaults = (("PostgreSQL", DEFAULT_DATABASE_URL), ("Redis", DEFAULT_BROKER_URL))
    silent = [(name, url) for name, url in defaults if not answers(url)]
    if not silent:
        return Backends(embedded=False)
    where = " and ".join(f"{name} at {_address(url)}" for name, url in silent)
    verb = "is" if len(silent) == 1 else "are"
    return Backends(
        embedded=True,
        reason=f"{where} {verb} not reachable and neither DATABASE_URL nor BROKER_URL is set",
        sqlite_path=sqlite_path,
    )


def answers(url: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether something accepts a TCP connection at the URL's host and port."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            return True
    except OSError:
        return False


def _address(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}"
