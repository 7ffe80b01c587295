"""Schemathesis with every check and every phase, over every operation, as staff and as a
plain user, against a live server: the API answers what its schema says, refuses what it
forbids and takes what it allows (issue 19). A finding fails the test with schemathesis's
report; its seed is fixed so that a failure replays."""

import os
import subprocess
import sys
from pathlib import Path

from signing.runs.follow import start_follow_run
from tests.conftest import ARTIFACTS, seed

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 19
# Per operation and phase; the coverage phase adds every boundary value the schema names.
MAX_EXAMPLES = 10
ALL_PHASES = "examples,coverage,fuzzing,stateful"


def schemathesis(base_url: str, who: str, token: str, follow_run: int) -> subprocess.Popen:
    ARTIFACTS.mkdir(exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("st")),
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/api/schema/",
        "--checks",
        "all",
        "--phases",
        ALL_PHASES,
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--header",
        f"Authorization: Token {token}",
        "--report",
        "junit",
        "--report-junit-path",
        str(ARTIFACTS / f"schemathesis-{who}.xml"),
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CONTRACT_FOLLOW_RUN_ID": str(follow_run)},
    )


def test_the_api_keeps_to_its_schema_as_staff_and_as_a_plain_user(
    live_server, tokens, unthrottled_starts, broker
):
    seed(records=40, keys=3)
    follow_run = start_follow_run(batch_size=10).pk
    runs = {
        who: schemathesis(live_server.url, who, token, follow_run) for who, token in tokens.items()
    }
    reports = {who: run.communicate(timeout=900)[0] for who, run in runs.items()}
    for who, run in runs.items():
        (ARTIFACTS / f"schemathesis-{who}.txt").write_text(reports[who])
        assert "13 selected / 13 total" in reports[who], reports[who][-3000:]
        assert run.returncode == 0, f"schemathesis as {who}:\n{reports[who][-6000:]}"
