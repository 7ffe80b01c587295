"""A bad setting stops every process at start-up with one line that names the variable and
what it takes (signing_site.settings), never a traceback: a log level, a log format and a
reaper interval among them, as much as a batch size."""

import pytest

from tests.support import manage


@pytest.mark.parametrize(
    ("environment", "line"),
    [
        (
            {"SIGNING_LOG_LEVEL": "bogus"},
            "SIGNING_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'bogus'",
        ),
        ({"SIGNING_LOG_FORMAT": "xml"}, "SIGNING_LOG_FORMAT must be one of text, json, got 'xml'"),
        (
            {"SIGNING_LEASE_TTL": "30", "SIGNING_REAPER_INTERVAL": "20"},
            "SIGNING_REAPER_INTERVAL must be at most 10 (a third of SIGNING_LEASE_TTL=30, "
            "at least 1), got 20",
        ),
        (
            {"SIGNING_METRICS_ALLOWED_NETWORKS": "127.0.0.1/8,not-a-network"},
            "SIGNING_METRICS_ALLOWED_NETWORKS: 'not-a-network' does not appear to be an IPv4 "
            "or IPv6 network",
        ),
        ({"SIGNING_BATCH_SIZE": "many"}, "SIGNING_BATCH_SIZE must be a whole number, got 'many'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_what_it_takes(environment, line):
    refused = manage(environment, "check", timeout=60)

    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [line]


def test_good_values_at_their_bounds_start():
    accepted = manage(
        {
            "SIGNING_LOG_LEVEL": "debug",
            "SIGNING_LOG_FORMAT": "JSON",
            "SIGNING_LEASE_TTL": "30",
            "SIGNING_REAPER_INTERVAL": "10",
        },
        "check",
        timeout=60,
    )
    assert accepted.returncode == 0, accepted.stderr
