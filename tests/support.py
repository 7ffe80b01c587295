"""Helpers the test modules share (issue 16, point 6): one way to run `manage.py` as a user."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANAGE = str(ROOT / "manage.py")


def manage(
    env: Mapping[str, str] | None,
    *args: str,
    inherit: bool = True,
    network: bool = True,
    stdin: int | None = subprocess.DEVNULL,
    timeout: float = 240,
) -> subprocess.CompletedProcess:
    """Run `manage.py ARGS` in a process of its own, as a user runs it, and return what it
    printed and its exit code (never raising on a failure: tests judge it).

    `env` is laid over this process's environment (the tests' database, broker and KEK), or
    is the whole environment with `inherit=False`. Without `network`, the command runs in a
    network namespace of its own, where no server answers. Output is 200 columns wide, so
    rich's tables and bars are not wrapped.
    """
    return subprocess.run(
        [*([] if network else ["unshare", "--net"]), sys.executable, MANAGE, *args],
        env={"COLUMNS": "200", **(os.environ if inherit else {}), **(env or {})},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
