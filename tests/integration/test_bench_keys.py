"""devtools/bench.py's in-memory signing rate opens the keys it signs with: the live ones."""

import pytest

from devtools.bench import raw_signing_rate
from keyring.models import SigningKey
from keyring.services import retire_key
from tests.conftest import seed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


def test_the_raw_signing_rate_leaves_the_retired_keys_out():
    # Given a keyring one key of which is retired (its sealed private key erased)
    seed(records=50, keys=2)
    retired = retire_key(kid=SigningKey.objects.order_by("id").first().kid)
    assert bytes(retired.encrypted_private_key) == b""

    # When the raw signing rate is measured, then it signs with the live key alone
    assert raw_signing_rate(processes=1) > 0
