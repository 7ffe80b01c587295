"""The OpenAPI schema is valid, and schemathesis finds no 5xx and no response off-schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import seed


@pytest.fixture
def api_schema(transactional_db):
    from signing_site.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def token(transactional_db) -> str:
    from django.contrib.auth import get_user_model

    seed(records=20, keys=2)
    user = get_user_model().objects.create_user("fuzzer", password="pw", is_staff=True)
    return Token.objects.create(user=user).key


def test_the_api_never_answers_5xx_and_keeps_to_its_schema(api_schema, token):
    # Driven by hand (not schema.parametrize) so that it runs inside pytest-django's
    # database fixtures: every operation, fuzzed, authenticated as staff.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            response = case.call(headers={"Authorization": f"Token {token}"})
            assert response.status_code < 500, (case.method, case.path, response.text[:500])
            if response.status_code < 300:
                case.validate_response(response, checks=[response_schema_conformance])

        call()


def test_the_schema_is_valid_openapi(client):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200
