"""POST /api/verify/ with {"items": [...]}: up to 1,000 items answered one by one, in order,
beside the one-item form (tests/integration/test_api.py)."""

import base64
import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from kernel import crypto
from keyring.services import retire_key
from records.models import Record, Signature
from signing.runs.dispatch import plan_run
from tests.conftest import seed
from tests.integration.factories import lease_batch, sign_and_release, sign_leased

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


@pytest.fixture
def reader() -> APIClient:
    user = get_user_model().objects.create_user("auditor", password="pw")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def signed_records() -> list[Signature]:
    """30 records, the first 20 signed (one batch) and the last 10 not."""
    seed(records=30, keys=2)
    run = plan_run(batch_size=20)
    sign_leased(lease_batch(run.batches.get(seq=1)))
    return list(Signature.objects.select_related("record", "key").order_by("record_id"))


def message_item(signature: Signature, *, suffix: str = "") -> dict:
    message = crypto.signing_input(signature.record_id, signature.record.payload).decode()
    return {
        "kid": signature.key.kid,
        "message": message + suffix,
        "signature": base64.b64encode(bytes(signature.signature)).decode(),
    }


def post(client: APIClient, body) -> tuple[int, dict]:
    response = client.post("/api/verify/", json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def test_each_item_gets_its_own_answer_in_order(reader, signed_records):
    unsigned = Record.objects.order_by("-id").first().pk
    first = signed_records[0]
    items = [
        {"record_id": first.record_id},
        {"record_id": unsigned},
        message_item(first),
        message_item(first, suffix="!"),
        {**message_item(first), "kid": "no-such-key"},
        {"record_id": first.record_id},
    ]

    status, body = post(reader, {"items": items})

    assert status == 200, body
    assert body == {
        "results": [
            {"valid": True, "retired_at": None},
            {"valid": None, "errors": {"record_id": ["No signed record has this id."]}},
            {"valid": True, "retired_at": None},
            {"valid": False, "retired_at": None},
            {"valid": None, "errors": {"kid": ["No key has this kid."]}},
            {"valid": True, "retired_at": None},
        ]
    }


def test_each_answer_says_when_its_key_was_retired(reader):
    # Given records signed by two keys, each batch's lease released, and the first key retired
    seed(records=20, keys=2)
    run = plan_run(batch_size=10)
    for batch in run.batches.order_by("seq"):
        sign_and_release(lease_batch(batch).id)
    signatures = list(Signature.objects.select_related("record", "key").order_by("record_id"))
    first = signatures[0]
    second = next(each for each in signatures if each.key_id != first.key_id)
    retired = retire_key(kid=first.key.kid)
    stamp = serializers.DateTimeField().to_representation(retired.retired_at)

    # When records and messages of both keys are verified at once
    items = [
        {"record_id": first.record_id},
        {"record_id": second.record_id},
        message_item(first),
        message_item(first, suffix="!"),
        message_item(second),
    ]
    status, body = post(reader, {"items": items})

    # Then the retired key's answers carry its retired_at, the other's null
    assert status == 200, body
    assert body["results"] == [
        {"valid": True, "retired_at": stamp},
        {"valid": True, "retired_at": None},
        {"valid": True, "retired_at": stamp},
        {"valid": False, "retired_at": stamp},
        {"valid": True, "retired_at": None},
    ]


def test_a_thousand_items_take_a_few_queries(reader, signed_records, django_assert_max_num_queries):
    items = [{"record_id": signed_records[i % 20].record_id} for i in range(1000)]
    with django_assert_max_num_queries(8):  # the token, the user, the records, the keys
        status, body = post(reader, {"items": items})
    assert status == 200
    assert body["results"] == [{"valid": True, "retired_at": None}] * 1000


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"items": []}, "items"),
        ({"items": [{"record_id": 1}] * 1001}, "items"),
        ({"items": {"record_id": 1}}, "items"),
        ({"items": "x"}, "items"),
        ({"items": None}, "items"),
        ({"items": [{"record_id": 1}], "record_id": 1}, "record_id"),
        ({"items": [{"record_id": 1}], "extra": True}, "extra"),
    ],
)
def test_a_bad_list_is_a_400_in_the_apis_error_shape(reader, signed_records, body, expected):
    status, answer = post(reader, body)
    assert status == 400, answer
    assert expected in answer["errors"], answer
    assert all(isinstance(message, str) for message in answer["errors"][expected])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"record_id": "1"}, "item 1: record_id: A valid integer is required."),
        ({"record_id": 0}, "item 1: record_id: "),
        ({"record_id": 1, "kid": "k"}, "item 1: Send either record_id alone"),
        ({"kid": "k", "message": "m", "signature": "!!"}, "item 1: signature: Not valid base64."),
        ({"kid": "k", "message": "m", "signature": "AAAA", "x": 1}, "item 1: x: Unknown field."),
        ([1], "item 1: Expected a JSON object."),
        ("record_id", "item 1: Expected a JSON object."),
    ],
)
def test_an_item_of_the_wrong_shape_refuses_the_request_naming_the_item(
    reader, signed_records, item, message
):
    status, answer = post(reader, {"items": [{"record_id": 1}, item, {"record_id": 2}]})
    assert status == 400, answer
    assert any(m.startswith(message) for m in answer["errors"]["items"]), answer


def test_the_one_item_form_is_unchanged(reader, signed_records):
    answer = {"valid": True, "retired_at": None}
    assert post(reader, {"record_id": signed_records[0].record_id}) == (200, answer)
    status, answer = post(reader, {"record_id": 99_999_999})
    assert status == 404
    assert "record_id" in answer["errors"]
