"""The API contract tests' cast: the live server's users, and the tools venv (make api-tools)."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.throttling import ScopedRateThrottle

API_TOOLS = Path(__file__).resolve().parents[2] / ".venv-api-tools" / "bin"


@pytest.fixture
def tokens(transactional_db) -> dict[str, str]:
    """An API token for a staff user and for a plain (read-only) user."""
    users = get_user_model().objects
    staff = users.create_user("contract-staff", password="unused staff pw", is_staff=True)
    plain = users.create_user("contract-plain", password="unused plain pw")
    return {
        "staff": Token.objects.create(user=staff).key,
        "plain": Token.objects.create(user=plain).key,
    }


@pytest.fixture
def unthrottled_starts(monkeypatch) -> None:
    """Starting runs without the start-run throttle's 30 a minute, so that the requests reach
    the view (a 429 is documented and would hide what follows it)."""
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"start-run": "100000/minute"})


@pytest.fixture
def api_tool():
    def path(name: str) -> str:
        tool = API_TOOLS / name
        if not tool.exists():
            pytest.fail(f"{tool} is missing: `make api-tools` installs it (`make test` does)")
        return str(tool)

    return path
