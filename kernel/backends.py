"""Which database and broker this process uses: the servers, or embedded mode.

Embedded mode is for a laptop with no PostgreSQL and no Redis: SQLite (WAL, every
transaction BEGIN IMMEDIATE) and Dramatiq's in-process broker, with the workers as threads
of the process that starts a run. The decision reads the environment the process was given,
then the project's env file (`.env`, as settings loads it; an empty value counts as not set):

1. ``SIGNING_EMBEDDED=1`` forces embedded mode; ``SIGNING_EMBEDDED=0`` forbids it.
2. ``DATABASE_URL`` or ``BROKER_URL`` set: the servers, as configured. An explicit URL
   that does not answer is an error where it is first used, never a quiet fall-back: an
   operator who named a server must not find the records signed somewhere else.
3. None of the three set: the default local servers if both accept a connection now,
   embedded mode otherwise. That probe runs once, in the entry point before settings are
   read (manage.py calls `decide_once`, for every command): `record` writes
   ``SIGNING_EMBEDDED=0`` or ``=1`` to the env file, so every later process decides by
   rule 1. A Redis restarting at the wrong instant must not make `keys disable` or `cancel`
   act on a SQLite file instead of the servers that hold the data.

Settings only read the decision (`choose`) and never open a connection when imported: a
process started with no decision anywhere (not through manage.py: gunicorn, a bare
``django.setup()``) uses the default servers, as rule 3 would once they answer. The image
sets ``SIGNING_EMBEDDED=0``.

Kept free of Django so manage.py can call it before settings are read, and tests can call
`choose`, `probe` and `record`.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import shlex
import socket
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from dotenv import dotenv_values

DEFAULT_DATABASE_NAME = "signing"
DEFAULT_DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DEFAULT_DATABASE_NAME}"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
PROBE_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Backends:
    embedded: bool
    # Why this mode, one line for the user: set in embedded mode and when a probe decided.
    reason: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    sqlite_path: Path | None = None
    # Nothing configured the mode, so this process probed the default servers: the
    # decision is this process's to record (`record`).
    probed: bool = False
    # Nothing configured the mode and nothing probed: the default servers, assumed. The
    # entry point probes (`decide_once`) before settings read this.
    undecided: bool = False

    def announcement(self) -> str:
        """The line a command says on stderr: always in embedded mode, and in the one
        process whose probe chose the servers; nothing when configuration chose them."""
        if self.embedded:
            return f"embedded mode ({self.reason}): SQLite at {self.sqlite_path}, in-process broker"
        return f"the servers ({self.reason})" if self.probed else ""


def choose(
    environ: Mapping[str, str],
    *,
    base_dir: Path,
    env_file: Path | None = None,
    env_file_values: Mapping[str, str | None] | None = None,
) -> Backends:
    """Decide from the environment, then the env file's values, and never probe: when
    neither configures anything, the default servers with `undecided` set (the entry point
    probes and records before settings call this, so in practice a decision exists)."""
    env_file = env_file or base_dir / ".env"
    given = _set_values(environ)
    setting = {**_set_values(env_file_values or {}), **given}.get
    name = database_name(setting("SIGNING_DATABASE_NAME"))
    sqlite_path = Path(setting("SIGNING_EMBEDDED_DB") or base_dir / ".embedded" / f"{name}.sqlite3")
    forced = setting("SIGNING_EMBEDDED", "")
    if forced not in {"", "0", "1"}:
        raise SystemExit(f"SIGNING_EMBEDDED must be 0 or 1, got {forced!r}")
    if forced == "1":
        where = "the environment" if "SIGNING_EMBEDDED" in given else env_file
        return Backends(
            embedded=True, reason=f"SIGNING_EMBEDDED=1 in {where}", sqlite_path=sqlite_path
        )
    database_url = setting("DATABASE_URL", "")
    broker_url = setting("BROKER_URL", "")
    if urlparse(database_url).scheme.startswith("sqlite"):
        # Without embedded mode's settings (BEGIN IMMEDIATE, WAL), leasing on SQLite would
        # not be serialized; with them, only embedded mode's broker makes sense.
        raise SystemExit(
            "DATABASE_URL cannot name SQLite: set SIGNING_EMBEDDED=1 (and SIGNING_EMBEDDED_DB "
            "for the file) to run on SQLite"
        )
    return Backends(
        embedded=False,
        database_url=database_url or DEFAULT_DATABASE_URL,
        broker_url=broker_url or DEFAULT_BROKER_URL,
        sqlite_path=sqlite_path,
        undecided=not (database_url or broker_url or forced == "0"),
    )


def probe(undecided: Backends) -> Backends:
    """Rule 3: the default servers if both accept a connection now, embedded mode
    otherwise; `probed` is set, and the caller records the decision (`record`)."""
    defaults = (("PostgreSQL", DEFAULT_DATABASE_URL), ("Redis", DEFAULT_BROKER_URL))
    silent = [(name, url) for name, url in defaults if not answers(url)]
    if not silent:
        both = " and ".join(f"{name} at {_address(url)}" for name, url in defaults)
        return replace(undecided, reason=f"{both} answered", probed=True, undecided=False)
    where = " and ".join(f"{name} at {_address(url)}" for name, url in silent)
    verb = "is" if len(silent) == 1 else "are"
    return replace(
        undecided,
        embedded=True,
        reason=(
            f"{where} {verb} not reachable and neither SIGNING_EMBEDDED, DATABASE_URL nor "
            "BROKER_URL is set"
        ),
        probed=True,
        undecided=False,
    )


def decide_once(
    environ: MutableMapping[str, str], *, base_dir: Path, by: str, now: datetime
) -> Backends | None:
    """For an entry point, before settings are read: when nothing configures the mode,
    probe the default servers and record the answer in the env file, where settings then
    read it. Returns the decision, whose announcement the command makes, or None when
    configuration decides (settings' own decision is then the one to announce).

    A decision the env file does not hold afterwards (it could not be written) is put in
    `environ`, so that settings, and the workers this command starts, keep to it.
    """
    env_file = env_file_path(environ, base_dir)
    chosen = choose(
        environ, base_dir=base_dir, env_file=env_file, env_file_values=dotenv_values(env_file)
    )
    if not chosen.undecided:
        return None
    decided = record(probe(chosen), env_file, by=by, now=now)
    if not _set_values(dotenv_values(env_file)).get("SIGNING_EMBEDDED"):
        environ["SIGNING_EMBEDDED"] = str(int(decided.embedded))
    return decided


def env_file_path(environ: Mapping[str, str], base_dir: Path) -> Path:
    """The env file settings load: SIGNING_ENV_FILE (the tests use their own), else `.env`."""
    return Path(environ.get("SIGNING_ENV_FILE") or base_dir / ".env")


def record(chosen: Backends, env_file: Path, *, by: str, now: datetime) -> Backends:
    """Append a probe's decision to the env file, with a comment saying when and why, so
    that every later process reads it and never probes again.

    The lines already there are kept; a new file is made readable by its owner only (it
    holds the KEK too). Under an exclusive lock, so of two processes that probed at once
    the second finds the first one's decision and takes it. A file that cannot be written
    costs one line on stderr: the decision then holds for this process only.
    """
    value = int(chosen.embedded)
    try:
        descriptor = os.open(env_file, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "r+", encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the file is closed
            text = file.read()
            earlier = (
                dotenv_values(stream=io.StringIO(text)).get("SIGNING_EMBEDDED") or ""
            ).strip()
            if earlier in {"0", "1"}:
                return replace(
                    chosen,
                    embedded=earlier == "1",
                    reason=f"SIGNING_EMBEDDED={earlier} in {env_file}",
                    probed=False,
                )
            file.write(
                ("\n" if text and not text.endswith("\n") else "")
                + f"# decided by {by} on {now:%Y-%m-%d %H:%M} UTC: {chosen.reason}\n"
                + f"SIGNING_EMBEDDED={value}\n"
            )
    except OSError as error:
        print(
            f"could not record SIGNING_EMBEDDED={value} in {env_file} "
            f"({error.strerror or error}): it holds for this process only",
            file=sys.stderr,
        )
        return replace(chosen, reason=f"{chosen.reason}; not recorded: for this process only")
    return replace(
        chosen, reason=f"{chosen.reason}; recorded as SIGNING_EMBEDDED={value} in {env_file}"
    )


@dataclass(frozen=True)
class Reopening:
    """What a command started later from a fresh shell in this project must be given, on
    its command line, to open the data this process opened: `shown` (name and value, safe to
    print) and `secret` (names only: a URL with a password, the KEK)."""

    shown: Mapping[str, str]
    secret: tuple[str, ...] = ()

    def prefix(self) -> str:
        """The assignments to put before the command, shell-quoted, with a trailing space."""
        return "".join(f"{name}={shlex.quote(value)} " for name, value in self.shown.items())

    def caveat(self) -> str:
        """Words after the command for the secret ones, or nothing."""
        if not self.secret:
            return ""
        return f" with the {' and '.join(self.secret)} this one was given"


def may_hold_a_secret(url: str) -> bool:
    """Whether a database URL may hold a password, so is named, never printed.

    Not only `user:password@`: libpq and the drivers read a password, or a file or key that
    opens one, from the query string too (`?password=`, `sslpassword=`, `passfile=`,
    `sslkey=`...), and a query can name more than anyone lists here. So any URL with a query
    string, `;` parameters or a fragment counts as secret, as does one with a password in
    its user part, one that does not parse, or one with "pass" anywhere (in whatever
    spelling); only a plain `scheme://user@host:port/name` is shown.
    """
    try:
        parsed = urlparse(url)
        password, _ = parsed.password, parsed.port  # .port raises for one out of range
    except ValueError:
        return True
    return bool(
        password is not None
        or parsed.query
        or parsed.params
        or parsed.fragment
        or "pass" in url.lower()
    )


def to_reopen(given: Mapping[str, str], *, base_dir: Path) -> Reopening:
    """What differs between the data a process with the environment `given` opens (before
    the env file is read) and what a later process with none of it would open (the env file
    alone): the env file itself, the mode, the SQLite file or DATABASE_URL; and the KEK.

    `SIGNING_DATABASE_NAME` is left to the caller, which names the database its own way
    (`make serve DEMO_DATABASE=…`). So a demo run with `SIGNING_EMBEDDED=1` given once says
    `SIGNING_EMBEDDED=1 make serve`, and one whose mode `.env` records says `make serve`.
    """
    given = _set_values(given)
    env_file = env_file_path(given, base_dir)
    in_file = _set_values(dotenv_values(env_file))
    shown: dict[str, str] = {}
    if env_file != base_dir / ".env":
        shown["SIGNING_ENV_FILE"] = str(env_file)
    kept = {name: given[name] for name in ("SIGNING_DATABASE_NAME",) if name in given}
    here = choose(given, base_dir=base_dir, env_file=env_file, env_file_values=in_file)
    later = choose(kept, base_dir=base_dir, env_file=env_file, env_file_values=in_file)
    if here.embedded != later.embedded:
        shown["SIGNING_EMBEDDED"] = str(int(here.embedded))
    if here.embedded and here.sqlite_path != later.sqlite_path:
        shown["SIGNING_EMBEDDED_DB"] = str(here.sqlite_path)
    secret = []
    if not here.embedded and here.database_url != later.database_url:
        if may_hold_a_secret(here.database_url):
            secret.append("DATABASE_URL")
        else:
            shown["DATABASE_URL"] = here.database_url
    if "SIGNING_KEK" in given and given["SIGNING_KEK"] != in_file.get("SIGNING_KEK"):
        secret.append("SIGNING_KEK")
    return Reopening(shown=shown, secret=tuple(secret))


# SQLite writes these beside the database file; they hold its latest pages.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def keep_sqlite_private(path: Path, *, base_dir: Path) -> None:
    """Make embedded mode's database readable by its owner only, whatever the umask: the
    records, sealed keys, sessions and API tokens are in it.

    Its folder is made 0700 when this call creates it, and so is the project's own
    `.embedded` folder even if it was there before; a folder the user named and made is
    left as it is. The file is created empty at 0600 when missing (SQLite then gives its
    -wal and -shm files the same mode) and set to 0600 with its companions when present,
    for files made before this was done (`keep_sqlite_files_private` does it again on every
    connection, for a test database SQLite creates itself). A file this process may not
    change costs one line on stderr.
    """
    folder = path.parent
    try:
        if not folder.exists():
            folder.mkdir(mode=0o700, parents=True)
            folder.chmod(0o700)
        elif folder.resolve() == (base_dir / ".embedded").resolve():
            folder.chmod(0o700)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as error:
        print(f"could not make {path} private ({error.strerror or error})", file=sys.stderr)
    keep_sqlite_files_private(path)


def keep_sqlite_files_private(path: Path) -> None:
    """Set the database file and the companions SQLite made beside it to 0600."""
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            file.chmod(0o600)
        except FileNotFoundError:
            continue
        except OSError as error:
            print(f"could not make {file} private ({error.strerror or error})", file=sys.stderr)


def database_name(configured: str | None) -> str:
    """SIGNING_DATABASE_NAME, checked: the name of the database (and of embedded mode's
    file) instead of the one DATABASE_URL names. `make demo` signs in its own, signing_demo,
    so the demo's resets never reach the database real work is done in."""
    if not configured:
        return DEFAULT_DATABASE_NAME
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", configured):
        raise SystemExit(
            "SIGNING_DATABASE_NAME must be lower-case letters, digits and underscores "
            f"(at most 63, not starting with a digit), got {configured!r}"
        )
    return configured


def answers(url: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether something accepts a TCP connection at the URL's host and port."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            return True
    except OSError:
        return False


def _set_values(values: Mapping[str, str | None]) -> dict[str, str]:
    """The variables that are set: an empty value (or a bare name in .env) is not."""
    return {name: value.strip() for name, value in values.items() if value and value.strip()}


def _address(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}"
