"""What `make serve` runs, read from make's dry run (`make -n`: every recipe printed, none
run), outside any make that runs the tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dry_run(*arguments: str, environment: dict[str, str] | None = None) -> list[str]:
    """The command lines `make ARGUMENTS` would run, in order, with `environment` added."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ADDR", "DEMO_DATABASE"}
    } | (environment or {})
    made = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", ROOT, *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return made.stdout.splitlines()


def serve_command(*arguments: str, environment: dict[str, str] | None = None) -> str:
    lines = dry_run("serve", *arguments, environment=environment)
    [command] = [line for line in lines if "manage.py serve" in line]
    return command


def test_make_serve_listens_on_127_0_0_1_8000_by_default() -> None:
    assert serve_command().endswith(
        "SIGNING_DATABASE_NAME=signing_demo .venv/bin/python manage.py serve 127.0.0.1:8000"
    )


@pytest.mark.parametrize("address", ["127.0.0.1:8123", "8123", "[::1]:8000", "0.0.0.0:80"])
def test_make_serve_takes_another_address_and_port_as_addr(address: str) -> None:
    assert serve_command(f"ADDR={address}").endswith(f"manage.py serve {address}")


def test_an_addr_exported_in_the_shell_is_not_picked_up_only_one_given_to_make() -> None:
    exported = {"ADDR": "0.0.0.0:80"}  # set for something else: make serve ignores it
    assert serve_command(environment=exported).endswith("manage.py serve 127.0.0.1:8000")
    given = serve_command("ADDR=127.0.0.1:8123", environment=exported)
    assert given.endswith("manage.py serve 127.0.0.1:8123")


def test_make_serve_serves_the_database_demo_database_names() -> None:
    assert serve_command("DEMO_DATABASE=other").startswith("SIGNING_DATABASE_NAME=other ")
