"""The REST API: every endpoint, who may call it, and what bad input gets."""

import base64
import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from kernel import crypto
from keyring.services import disable_key, retire_key
from records.models import Record
from signing.models import Batch, SigningRun
from signing.runs.dispatch import plan_run
from tests.conftest import seed
from tests.integration.factories import (
    keyring_in_use,
    lease_batch,
    sign_and_release,
    sign_leased,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def staff():
    return client_for(get_user_model().objects.create_user("ops", password="pw", is_staff=True))


@pytest.fixture
def reader():
    return client_for(get_user_model().objects.create_user("auditor", password="pw"))


@pytest.fixture
def anonymous():
    return APIClient()


@pytest.fixture
def keyring_and_records():
    return seed(records=30, keys=3)


@pytest.fixture
def signed_record(keyring_and_records):
    """One record signed through the real store path, under a real lease."""
    run = plan_run(batch_size=30)
    sign_leased(lease_batch(run.batches.get()))
    return Record.objects.order_by("id").first()


# --- authentication and permissions ------------------------------------------------------
def test_a_token_is_issued_for_a_username_and_password(anonymous):
    user = get_user_model().objects.create_user("ops", password="pw")
    response = anonymous.post(
        "/api/auth/token/", {"username": "ops", "password": "pw"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=user).key
    wrong = anonymous.post("/api/auth/token/", {"username": "ops", "password": "no"}, format="json")
    assert wrong.status_code == 400


def test_logging_in_takes_json_and_forms_and_ignores_a_stale_token(anonymous):
    get_user_model().objects.create_user("ops", password="pw")
    anonymous.credentials(HTTP_AUTHORIZATION="Token expired-or-wrong")  # not looked at
    form = anonymous.post(
        "/api/auth/token/",
        "username=ops&password=pw",
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 200
    # Multipart is refused: its file parts are not held to the 256 KiB body cap.
    upload = anonymous.post(
        "/api/auth/token/", {"username": "ops", "password": "pw"}, format="multipart"
    )
    assert upload.status_code == 415
    assert list(upload.json()["errors"]) == ["detail"]


@pytest.mark.parametrize(
    "url", ["/api/runs/", "/api/runs/1/", "/api/keys/", "/api/records/1/", "/api/runs/1/leases/"]
)
def test_anonymous_reads_get_401(anonymous, url):
    response = anonymous.get(url)
    assert response.status_code == 401
    assert "detail" in response.json()["errors"]


def test_a_bad_token_gets_401(anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert anonymous.get("/api/runs/").status_code == 401


def test_only_staff_may_start_or_cancel_runs(reader, keyring_and_records):
    assert reader.post("/api/runs/", {"batch_size": 5}, format="json").status_code == 403
    run = plan_run(batch_size=5)
    assert reader.post(f"/api/runs/{run.pk}/cancel/").status_code == 403
    assert SigningRun.objects.get().status == SigningRun.Status.RUNNING


def test_the_jwks_is_public_and_holds_public_keys_only(anonymous, keyring_and_records):
    response = anonymous.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [k.kid for k in keyring_and_records]
    for jwk in keys:
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
        assert len(base64.urlsafe_b64decode(jwk["x"] + "==")) == 32
        assert "d" not in jwk  # the private part of an OKP JWK


# --- runs --------------------------------------------------------------------------------
def test_staff_start_a_run_and_get_201(staff, keyring_and_records):
    response = staff.post("/api/runs/", {"batch_size": 7}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    run = SigningRun.objects.get()
    assert body["id"] == run.pk
    assert body["batch_size"] == 7
    assert body["progress"]["total_records"] == 30
    assert body["progress"]["total_batches"] == 5


def test_a_run_without_a_batch_size_uses_the_default(staff, keyring_and_records, settings):
    settings.SIGNING_BATCH_SIZE = 11
    assert staff.post("/api/runs/", {}, format="json").json()["batch_size"] == 11


def test_a_second_run_gets_409(staff, keyring_and_records):
    active = plan_run(batch_size=5)
    response = staff.post("/api/runs/", {"batch_size": 5}, format="json")
    assert response.status_code == 409
    assert f"run {active.pk} is still active" in response.json()["errors"]["detail"][0]
    assert SigningRun.objects.count() == 1


@pytest.mark.cast(records=30, keys=3, batch_size=10)
def test_runs_list_and_detail_show_progress(reader, cast):
    run = cast.run
    listed = reader.get("/api/runs/").json()
    assert listed["count"] == 1
    detail = reader.get(f"/api/runs/{run.pk}/").json()
    assert detail["status"] == "running"
    assert detail["progress"]["batches_in_flight"] == 1
    assert detail["progress"]["batches_pending"] == 2
    assert detail["audit_passed"] is None
    assert detail["merkle_root"] is None  # set when the run completes


def test_a_completed_runs_detail_shows_its_merkle_root_in_hex(reader, keyring_and_records):
    run = plan_run(batch_size=5)
    SigningRun.objects.filter(pk=run.pk).update(
        status=SigningRun.Status.COMPLETED, merkle_root=bytes(range(32))
    )
    detail = reader.get(f"/api/runs/{run.pk}/").json()
    assert detail["merkle_root"] == bytes(range(32)).hex()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_run_can_never_be_changed(staff, keyring_and_records, method):
    run = plan_run(batch_size=5)
    response = getattr(staff, method)(f"/api/runs/{run.pk}/", {"batch_size": 6}, format="json")
    assert response.status_code == 405
    assert SigningRun.objects.get().batch_size == 5


def test_staff_cancel_an_active_run_and_get_409_the_second_time(staff, keyring_and_records):
    run = plan_run(batch_size=5)
    first = staff.post(f"/api/runs/{run.pk}/cancel/")
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert staff.post(f"/api/runs/{run.pk}/cancel/").status_code == 409


def test_a_runs_leases_come_in_the_order_granted(reader, keyring_and_records):
    run = plan_run(batch_size=10)
    granted = [lease_batch(batch) for batch in run.batches.order_by("seq")]
    leases = reader.get(f"/api/runs/{run.pk}/leases/").json()["results"]
    assert [lease["id"] for lease in leases] == [g.id for g in granted]
    assert [lease["kid"] for lease in leases] == [g.kid for g in granted]
    assert leases[0]["batch_seq"] == 1


# --- keys, records, verify ---------------------------------------------------------------
def test_keys_come_in_lru_order_with_their_public_part_only(reader, keyring_and_records):
    keys = reader.get("/api/keys/").json()["results"]
    assert [k["lru_position"] for k in keys] == [1, 2, 3]
    assert set(keys[0]) == {
        "kid",
        "algorithm",
        "public_key_pem",
        "enabled",
        "disabled_at",
        "retired_at",
        "last_used_at",
        "created_at",
        "lease_count",
        "held",
        "lru_position",
    }
    one = reader.get(f"/api/keys/{keys[1]['kid']}/").json()
    assert one["kid"] == keys[1]["kid"]
    assert "PRIVATE" not in json.dumps(keys)


def test_keys_come_in_the_order_the_next_leases_take_them_and_disabled_ones_last(reader):
    # Given two keys used, and two disabled (one of them used)
    keyring = keyring_in_use()

    # When the list is read
    keys = reader.get("/api/keys/").json()["results"]

    # Then the enabled keys come first, numbered in LRU order, and the disabled ones after,
    # with no position
    assert [k["kid"] for k in keys] == keyring.next_leases + keyring.disabled
    assert [k["lru_position"] for k in keys] == [1, 2, 3, None, None]
    # and the next leases take exactly the enabled keys, in that order
    pending = keyring.run.batches.filter(status=Batch.Status.PENDING).order_by("seq")
    assert [lease_batch(batch).kid for batch in pending[:3]] == keyring.next_leases


def test_a_keys_own_page_gives_the_position_the_list_gives(reader):
    keyring_in_use()
    listed = reader.get("/api/keys/").json()["results"]
    for key in listed:
        one = reader.get(f"/api/keys/{key['kid']}/").json()
        assert (one["kid"], one["lru_position"]) == (key["kid"], key["lru_position"])


def test_a_disabled_key_says_since_when(reader, keyring_and_records):
    kid = reader.get("/api/keys/").json()["results"][0]["kid"]
    disabled_at = disable_key(kid=kid).disabled_at

    key = reader.get(f"/api/keys/{kid}/").json()

    assert key["enabled"] is False
    assert key["disabled_at"] == disabled_at.isoformat().replace("+00:00", "Z")


def test_a_record_shows_its_signature(reader, signed_record):
    body = reader.get(f"/api/records/{signed_record.pk}/").json()
    signature = signed_record.signature
    assert body["payload"] == signed_record.payload
    assert base64.b64decode(body["signature"]) == bytes(signature.signature)
    assert body["kid"] == signature.key.kid
    assert body["batch"] == signature.batch_id


def test_an_unsigned_record_has_null_signature(reader, keyring_and_records):
    record = Record.objects.first()
    body = reader.get(f"/api/records/{record.pk}/").json()
    assert body["signature"] is None
    assert body["kid"] is None


def test_verify_a_stored_record(reader, signed_record):
    response = reader.post("/api/verify/", {"record_id": signed_record.pk}, format="json")
    assert response.json() == {"valid": True, "retired_at": None}


def message_body(record: Record) -> dict:
    """The message form of verify for a signed record: its signing input, its signature."""
    return {
        "kid": record.signature.key.kid,
        "message": crypto.signing_input(record.pk, record.payload).decode(),
        "signature": base64.b64encode(bytes(record.signature.signature)).decode(),
    }


def test_verify_a_message_and_its_tampered_twin(reader, signed_record):
    body = message_body(signed_record)
    not_retired = {"valid": True, "retired_at": None}
    assert reader.post("/api/verify/", body, format="json").json() == not_retired
    body["message"] += "!"
    assert reader.post("/api/verify/", body, format="json").json() == {
        "valid": False,
        "retired_at": None,
    }


def test_verify_says_when_the_key_it_checked_with_was_retired(reader, keyring_and_records):
    # Given a record signed under a lease since released, and its key then retired
    run = plan_run(batch_size=30)
    sign_and_release(lease_batch(run.batches.get()).id)
    record = Record.objects.order_by("id").first()
    retired = retire_key(kid=record.signature.key.kid)
    stamp = serializers.DateTimeField().to_representation(retired.retired_at)

    # When the record and a message are verified, and a message the key never signed
    by_record = reader.post("/api/verify/", {"record_id": record.pk}, format="json")
    body = message_body(record)
    by_message = reader.post("/api/verify/", body, format="json")
    forged = reader.post("/api/verify/", {**body, "message": "forged"}, format="json")

    # Then each answer says the key is retired, and when (a signature it made still verifies)
    assert by_record.json() == {"valid": True, "retired_at": stamp}
    assert by_message.json() == {"valid": True, "retired_at": stamp}
    assert forged.json() == {"valid": False, "retired_at": stamp}


# --- bad input: always a 4xx with field-level errors, and nothing created ---------------
BAD_RUN_BODIES = [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -1}, "batch_size"),
    ({"batch_size": 10**12}, "batch_size"),
    ({"batch_size": "abc"}, "batch_size"),
    ({"batch_size": "12"}, "batch_size"),
    ({"batch_size": None}, "batch_size"),
    ({"batch_size": 1.5}, "batch_size"),
    ({"batch_size": 2.0}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"batch_size": [5]}, "batch_size"),
    ({"batch_size": {"n": 5}}, "batch_size"),
    ({"batch_size": 5, "max_in_flight": 3}, "max_in_flight"),
    ({"batchsize": 5}, "batchsize"),
    ([5], "detail"),
    ("5", "detail"),
]


@pytest.mark.parametrize(("body", "field"), BAD_RUN_BODIES)
def test_a_bad_run_body_is_a_field_level_400_and_starts_nothing(
    staff, keyring_and_records, body, field
):
    response = staff.post("/api/runs/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert all(isinstance(m, str) for m in errors[field])
    assert not SigningRun.objects.exists()
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        ("{not json", "application/json", 400),
        ('{"batch_size": 5, "batch_size": 500}', "application/json", 400),  # which one?
        ('{"batch_size": NaN}', "application/json", 400),
        ("", "application/json", 400),
        ("batch_size=5", "application/x-www-form-urlencoded", 415),
        ("batch_size: 5", "text/plain", 415),
        ('{"batch_size": 5' + " " * 300_000 + "}", "application/json", 413),
    ],
)
def test_a_malformed_body_is_refused_and_starts_nothing(
    staff, keyring_and_records, raw, content_type, expected
):
    response = staff.post("/api/runs/", raw, content_type=content_type)
    assert response.status_code == expected, response.content
    assert "detail" in response.json()["errors"]
    assert not SigningRun.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ({"record_id": "1"}, "record_id", 400),
        ({"record_id": 0}, "record_id", 400),
        ({"record_id": 2**70}, "record_id", 400),
        ({"kid": "key-x", "message": "m", "signature": "!!notbase64!!"}, "signature", 400),
        ({"kid": "no-such-key", "message": "m", "signature": "AAAA"}, "kid", 404),
        ({"kid": "key-x", "message": "m"}, "signature", 400),
        ({"kid": "key-x", "message": 0, "signature": "AAAA"}, "message", 400),
        ({"kid": "key x", "message": "m", "signature": "AAAA"}, "kid", 400),
        ({"kid": "key-x", "message": "m\u0000", "signature": "AAAA"}, "message", 400),
        ({"kid": "key-x", "message": "m", "signature": "AAA"}, "signature", 400),
        ({"record_id": 1, "extra": 1}, "extra", 400),
        ({"record_id": 1, "kid": "k", "message": "m", "signature": "AAAA"}, "detail", 400),
        ({}, "detail", 400),
        ({"record_id": 99_999_999}, "record_id", 404),
        ({"message": "x" * 100_001, "kid": "k", "signature": "AAAA"}, "message", 400),
    ],
)
def test_a_bad_verify_body_gets_a_field_level_error(reader, signed_record, body, field, expected):
    response = reader.post("/api/verify/", json.dumps(body), content_type="application/json")
    assert response.status_code == expected, response.content
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/records/abc/",
        "/api/records/9999999999999999999999999999/",
        "/api/runs/-1/",
        "/api/runs/99999999/",
        "/api/keys/no-such-key/",
        "/api/keys/%00/",
        "/api/nosuch/",
        "/api/",
        "/api/runs/1/nosuch/",
    ],
)
def test_unknown_ids_and_paths_are_404_in_the_error_shape(reader, keyring_and_records, url):
    response = reader.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert list(response.json()["errors"]) == ["detail"]


def test_a_path_no_endpoint_matches_is_404_for_every_method(reader):
    for method in ("post", "put", "delete", "patch"):
        response = getattr(reader, method)("/api/runs/abc/cancel/")
        assert response.status_code == 404, method  # not CSRF's 403 page, not HTML
        assert response["Content-Type"] == "application/json", method


def test_a_path_missing_its_trailing_slash_is_named(reader, keyring_and_records):
    response = reader.post("/api/runs", {"batch_size": 5}, format="json")
    assert response.status_code == 404
    assert response.json() == {
        "errors": {"detail": ["No API endpoint has this path: did you mean /api/runs/ ?"]}
    }
    assert not SigningRun.objects.exists()
    # Served under a script prefix (a reverse proxy's /svc/): the URLconf sees path_info.
    prefixed = reader.post("/api/runs", {"batch_size": 5}, format="json", SCRIPT_NAME="/svc")
    assert prefixed.status_code == 404
    assert prefixed.json()["errors"]["detail"][0].endswith("did you mean /svc/api/runs/ ?")


def test_a_body_that_is_not_an_object_is_named_in_words(reader, keyring_and_records):
    for url in ("/api/verify/", "/api/runs/"):
        response = reader.post(url, "[1]", content_type="application/json")
        assert response.status_code in (400, 403), url
        assert "ErrorDetail" not in response.content.decode(), url
    response = reader.post("/api/verify/", "[1]", content_type="application/json")
    assert response.json() == {"errors": {"detail": ["Expected a JSON object."]}}


def test_starting_runs_is_throttled(staff, keyring_and_records, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"start-run": "2/minute"})
    codes = [
        staff.post("/api/runs/", {"batch_size": 500}, format="json").status_code for _ in range(3)
    ]
    assert codes == [201, 409, 429]  # the second is refused as a duplicate, the third throttled
    assert SigningRun.objects.count() == 1
    cache.clear()


def test_a_run_is_refused_when_no_key_can_sign(staff):
    seed(records=10, keys=0)
    response = staff.post("/api/runs/", {"batch_size": 5}, format="json")
    assert response.status_code == 409
    assert "seed keys first" in response.json()["errors"]["detail"][0]
    assert not SigningRun.objects.exists()


def test_a_run_is_refused_when_the_kek_does_not_open_the_keys(
    staff, keyring_and_records, monkeypatch
):
    from keyring.sealing import generate_kek

    monkeypatch.setenv("SIGNING_KEK", generate_kek())
    response = staff.post("/api/runs/", {"batch_size": 5}, format="json")
    assert response.status_code == 409
    assert "not the KEK the keys are sealed under" in response.json()["errors"]["detail"][0]
    assert not SigningRun.objects.exists()


# --- bounded pages (issue 15) ------------------------------------------------------------
def list_operations() -> set[str]:
    """Every path whose GET takes ?limit=, read from the schema the API serves."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        path
        for path, operations in schema["paths"].items()
        if any(p["name"] == "limit" for p in operations.get("get", {}).get("parameters", []))
    }


def test_every_list_endpoint_takes_limit_and_offset_as_documented(
    reader, keyring_and_records, monkeypatch
):
    """Each list is paged by BoundedLimitOffsetPagination: `limit` 1 to max_limit and
    `offset` 0 to 2**63 - 1, each a whole number given once; anything else is a 400 naming
    the parameter, never a silently different page (the cap is lowered here so three rows are
    enough to see it)."""
    from signing.api.pagination import BoundedLimitOffsetPagination

    run = plan_run(batch_size=10)
    for batch in run.batches.order_by("seq"):
        lease_batch(batch)
    SigningRun.objects.bulk_create(
        SigningRun(batch_size=1, status=SigningRun.Status.COMPLETED, max_in_flight=1)
        for _ in range(2)
    )
    urls = {
        "/api/runs/": "/api/runs/",
        "/api/keys/": "/api/keys/",
        "/api/runs/{id}/leases/": f"/api/runs/{run.pk}/leases/",
    }
    assert list_operations() == set(urls), "a new list endpoint: add it here"
    assert BoundedLimitOffsetPagination.max_limit == 1000
    monkeypatch.setattr(BoundedLimitOffsetPagination, "max_limit", 2)
    for url in urls.values():
        page = reader.get(url, {"limit": "2", "offset": "1"}).json()
        assert page["count"] == 3, url
        assert len(page["results"]) == 2, url
        assert len(reader.get(url, {"offset": str(2**63 - 1)}).json()["results"]) == 0, url
        refused = {
            "limit": ["3", "0", "-1", "ten", "1.5", "", " 1", "99999999999999999999999"],
            "offset": ["-1", "false", str(2**63), "1e3"],
        }
        for name, values in refused.items():
            for value in values:
                response = reader.get(url, {name: value})
                assert response.status_code == 400, (url, name, value)
                assert list(response.json()["errors"]) == [name], (url, name, value)
        twice = reader.get(f"{url}?limit=1&limit=2")
        assert twice.status_code == 400, url
        assert twice.json() == {"errors": {"limit": ["Give limit once, not 2 times."]}}
