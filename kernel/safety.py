"""Refuse to serve over the network with DEBUG off and the development SECRET_KEY or open
ALLOWED_HOSTS.

Checked where the app is served, not in settings: `manage.py` commands (sign, seed, audit,
rundramatiq, migrate, demo) serve no page, and a developer's machine, the tests and
`make demo` run them with no DJANGO_SECRET_KEY at all. What is served:
- the WSGI app (signing_site.wsgi), which gunicorn loads: it cannot know the address it is
  bound to, and it is how production serves, so it is always checked;
- runserver and `manage.py serve`, which load the same WSGI module: checked unless their
  address is a loopback one (127.0.0.1, ::1, localhost), the development way of `make serve`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# What Django's `check --deploy` asks of a key (security.W009), with the prefix that
# `startproject` gives a generated development key.
SHORTEST_SECRET_KEY = 50
FEWEST_DISTINCT_CHARACTERS = 5
DEVELOPMENT_SERVERS = ("runserver", "serve")
HOW_TO_MAKE_A_KEY = (
    "set DJANGO_SECRET_KEY to a random value of 50 characters or more, for example the "
    "output of: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
)


def unsafe_settings() -> list[str]:
    """What makes these settings unfit to serve over the network, one line each."""
    if settings.DEBUG:
        return []  # DEBUG=1 is a developer's: Django's DEBUG pages say so on every error
    problems = []
    key = settings.SECRET_KEY or ""
    if key == settings.DEVELOPMENT_SECRET_KEY or key.startswith("django-insecure-"):
        problems.append(
            f"DJANGO_SECRET_KEY is not set (the development default): {HOW_TO_MAKE_A_KEY}"
        )
    elif len(key) < SHORTEST_SECRET_KEY or len(set(key)) < FEWEST_DISTINCT_CHARACTERS:
        problems.append(f"DJANGO_SECRET_KEY is too short or too simple: {HOW_TO_MAKE_A_KEY}")
    hosts = settings.ALLOWED_HOSTS
    if not hosts or "*" in hosts:
        problems.append(
            f"DJANGO_ALLOWED_HOSTS is {','.join(hosts) or 'empty'}: set it to the host names "
            "this service is reached by, comma-separated (for example "
            "signing.example.org), never *"
        )
    return problems


def refuse_unsafe_serving(*, address: str | None) -> None:
    """Raise ImproperlyConfigured, naming each variable and its fix, unless the settings are
    safe to serve with or `address` is a loopback one. `address` None: not known (gunicorn)."""
    if address is not None and is_loopback(address):
        return
    problems = unsafe_settings()
    if problems:
        where = f"on {address}" if address else "over WSGI"
        raise ImproperlyConfigured(
            f"Refusing to serve {where} with DJANGO_DEBUG off:\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + "\n(runserver and `manage.py serve` on 127.0.0.1 need neither.)"
        )


def is_loopback(address: str) -> bool:
    """Whether a runserver address (`8000`, `127.0.0.1:8000`, `[::1]:8000`, `localhost`)
    is reached from this machine only."""
    if address.isdigit():
        return True  # a bare port: runserver's default host, 127.0.0.1
    host = address
    if "]" in address or address.count(":") == 1:
        host = address.rsplit(":", 1)[0]  # drop the port
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: whatever it resolves to, it may be public


def development_server_address(argv: Sequence[str]) -> str | None:
    """The address `manage.py runserver` or `manage.py serve` was asked to serve on, read
    with that command's own parser; None for any other process (gunicorn)."""
    if len(argv) < 2 or argv[1] not in DEVELOPMENT_SERVERS:
        return None
    from django.core.management import get_commands, load_command_class

    command = load_command_class(get_commands()[argv[1]], argv[1])
    options, _ = command.create_parser(argv[0], argv[1]).parse_known_args(list(argv[2:]))
    return options.addrport or "127.0.0.1:8000"
