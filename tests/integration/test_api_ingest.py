"""POST /api/records/ (issue 18, point 1): who may add records, what comes back, and that
bad input is refused in the API's one error shape with nothing stored."""

import importlib
import json
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from rest_framework.test import APIClient

from records.models import Record
from records.payloads import MAX_PAYLOAD_CHARS, MAX_RECORDS_PER_INGEST
from tests.integration.test_api import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]

URL = "/api/records/"
producers_migration = importlib.import_module("records.migrations.0010_producers_group")


@pytest.fixture
def producers_group() -> Group:
    """The group records migration 0010 makes. Made again here by the migration's own
    function: a transactional test before this one may have flushed every table. (The
    function reads only the schema editor's connection; SQLite's real one cannot open
    inside the test's transaction.)"""
    producers_migration.create_producers_group(apps, SimpleNamespace(connection=connection))
    return Group.objects.get(name="producers")


@pytest.fixture
def producer(producers_group):
    """A user with no staff flag, in the producers group: may add records, nothing more."""
    user = get_user_model().objects.create_user("sensor", password="pw")
    user.groups.add(producers_group)
    return client_for(user)


@pytest.fixture
def staff():
    return client_for(get_user_model().objects.create_user("ops", password="pw", is_staff=True))


@pytest.fixture
def reader():
    """Logged in, but neither staff nor a producer."""
    return client_for(get_user_model().objects.create_user("auditor", password="pw"))


def post(client: APIClient, body, *, content_type: str = "application/json"):
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, raw, content_type=content_type)


def records_body(*payloads: str) -> dict:
    return {"records": [{"payload": payload} for payload in payloads]}


# --- who may add records --------------------------------------------------------------------
def test_anonymous_gets_401_and_nothing_is_stored():
    response = post(APIClient(), records_body("hello"))
    assert response.status_code == 401
    assert list(response.json()["errors"]) == ["detail"]
    assert not Record.objects.exists()


def test_a_user_neither_staff_nor_producer_gets_403_and_nothing_is_stored(reader):
    response = post(reader, records_body("hello"))
    assert response.status_code == 403
    assert "producers" in response.json()["errors"]["detail"][0]
    assert not Record.objects.exists()


def test_a_producer_adds_records(producer):
    response = post(producer, records_body("hello"))
    assert response.status_code == 201, response.content
    assert Record.objects.get(pk=response.json()["ids"][0]).payload == "hello"


def test_staff_add_records(staff):
    response = post(staff, records_body("hello"))
    assert response.status_code == 201, response.content
    assert Record.objects.count() == 1


def test_the_producers_group_is_made_with_the_permission_to_add_records(producers_group):
    assert list(producers_group.permissions.values_list("content_type__app_label", "codename")) == [
        ("records", "add_record")
    ]


def test_the_permission_given_to_one_user_is_enough(producers_group):
    user = get_user_model().objects.create_user("one-off", password="pw")
    user.user_permissions.add(producers_group.permissions.get())
    assert post(client_for(user), records_body("x")).status_code == 201


def test_a_producer_may_still_not_start_a_run(producer):
    assert producer.post("/api/runs/", {}, format="json").status_code == 403


# --- what comes back, what is stored -------------------------------------------------------
UNICODE_PAYLOADS = [
    "",  # an empty payload is text too
    " leading and trailing whitespace, kept \t",
    "line one\nline two\r\n",
    "éèàñüößç αβγδΩ 中文日本語한국어 €£¥",
    "🙂🚀 outside the BMP, and a pair escaped in JSON: \U0001f600",
    "\x01\x1f\x7f control characters other than NUL",
    "\ufeff\ufffe\uffff noncharacters and a BOM",
    "x" * MAX_PAYLOAD_CHARS,
]


def test_ids_come_back_in_request_order_and_each_payload_is_stored_exactly(staff):
    before = Record.objects.create(payload="already there").pk
    response = post(staff, records_body(*UNICODE_PAYLOADS))
    assert response.status_code == 201, response.content
    ids = response.json()["ids"]
    assert list(response.json()) == ["ids"]
    assert len(ids) == len(UNICODE_PAYLOADS)
    assert ids == sorted(set(ids))  # increasing: request order
    assert ids[0] > before
    stored = dict(Record.objects.filter(pk__in=ids).values_list("id", "payload"))
    assert [stored[i] for i in ids] == UNICODE_PAYLOADS


def test_a_surrogate_pair_escaped_in_json_is_one_character(staff):
    response = post(staff, '{"records": [{"payload": "\\ud83d\\ude00"}]}')
    assert response.status_code == 201, response.content
    assert Record.objects.get().payload == "\U0001f600"


def test_ten_thousand_records_are_stored_in_one_request(staff):
    payloads = [f"{n}" for n in range(MAX_RECORDS_PER_INGEST)]
    response = post(staff, records_body(*payloads))
    assert response.status_code == 201, response.content
    ids = response.json()["ids"]
    assert len(ids) == MAX_RECORDS_PER_INGEST
    stored = dict(Record.objects.values_list("id", "payload"))
    assert [stored[i] for i in ids] == payloads


# --- bad input: one error shape, 4xx, nothing stored -------------------------------------------
def too_many_records() -> dict:
    return {"records": [{"payload": ""} for _ in range(MAX_RECORDS_PER_INGEST + 1)]}


BAD_BODIES = [
    # (body as JSON text or a value to encode, the field its error is under, a word of it)
    pytest.param({"records": []}, "records", "at least one", id="empty-list"),
    pytest.param({}, "records", "required", id="no-records-key"),
    pytest.param({"records": None}, "records", "null", id="records-null"),
    pytest.param({"records": {"payload": "x"}}, "records", "array", id="records-an-object"),
    pytest.param({"records": "x"}, "records", "array", id="records-a-string"),
    pytest.param({**records_body("x"), "run": 1}, "run", "Unknown", id="extra-top-level-key"),
    pytest.param({"records": [{}]}, "records", "required", id="missing-payload"),
    pytest.param(
        {"records": [{"payload": "x", "kind": "y"}]}, "records", "'kind'", id="extra-record-key"
    ),
    pytest.param({"records": ["x"]}, "records", "object", id="record-a-string"),
    pytest.param({"records": [None]}, "records", "object", id="record-null"),
    pytest.param({"records": [{"payload": 5}]}, "records", "number", id="payload-a-number"),
    pytest.param({"records": [{"payload": None}]}, "records", "null", id="payload-null"),
    pytest.param({"records": [{"payload": True}]}, "records", "boolean", id="payload-a-boolean"),
    pytest.param({"records": [{"payload": ["x"]}]}, "records", "array", id="payload-an-array"),
    pytest.param({"records": [{"payload": {"a": 1}}]}, "records", "object", id="payload-an-object"),
    pytest.param(records_body("ok", "a\x00b"), "records", "NUL", id="nul-byte"),
    pytest.param(records_body("\x00"), "records", "NUL", id="only-a-nul-byte"),
    pytest.param(
        '{"records": [{"payload": "a\\ud800b"}]}', "records", "surrogate", id="lone-high-surrogate"
    ),
    pytest.param(
        '{"records": [{"payload": "\\udfff"}]}', "records", "surrogate", id="lone-low-surrogate"
    ),
    pytest.param(
        '{"records": [{"payload": "\\ude00\\ud83d"}]}',
        "records",
        "surrogate",
        id="surrogates-in-the-wrong-order",
    ),
    pytest.param(
        records_body("x" * (MAX_PAYLOAD_CHARS + 1)), "records", "longer", id="payload-too-long"
    ),
    pytest.param(too_many_records(), "records", "at most", id="over-10000-records"),
    pytest.param([{"payload": "x"}], "detail", "object", id="a-list-not-an-object"),
    pytest.param('"records"', "detail", "object", id="a-string-not-an-object"),
    pytest.param("null", "detail", "No data", id="null-not-an-object"),
    pytest.param("{not json", "detail", "JSON parse error", id="not-json"),
    pytest.param(
        '{"records": [{"payload": "a", "payload": "b"}]}',
        "detail",
        "'payload' is given twice",
        id="payload-given-twice",
    ),
    pytest.param(
        '{"records": [{"payload": "a"}], "records": []}',
        "detail",
        "'records' is given twice",
        id="records-given-twice",
    ),
    pytest.param('{"records": [{"payload": NaN}]}', "detail", "JSON parse error", id="nan"),
]


@pytest.mark.parametrize(("body", "field", "word"), BAD_BODIES)
def test_bad_input_is_a_400_in_the_one_error_shape_and_nothing_is_stored(staff, body, field, word):
    response = post(staff, body)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == [field], errors
    assert all(isinstance(message, str) for message in errors[field])
    assert word in " ".join(errors[field]), errors
    assert not Record.objects.exists()


def test_every_bad_record_is_named_by_its_place_and_nothing_of_the_request_is_stored(staff):
    body = {"records": [{"payload": "good"}, {"payload": 1}, {"payload": "a\x00"}, {"x": "y"}]}
    response = post(staff, body)
    assert response.status_code == 400
    messages = response.json()["errors"]["records"]
    assert [message.split(maxsplit=1)[0] for message in messages] == [
        "records[1].payload",
        "records[2].payload",
        "records[3]:",
    ]
    assert not Record.objects.exists()


def test_a_thousand_bad_records_list_ten_and_count_the_rest(staff):
    response = post(staff, records_body(*["\x00"] * 1000))
    messages = response.json()["errors"]["records"]
    assert len(messages) == 11
    assert messages[-1] == "… and 990 more records with problems."


def test_errors_never_quote_the_payload(staff):
    secret = "card 4111-1111-1111-1111"
    response = post(staff, records_body(secret + "\x00", secret + "\ud800"))
    assert response.status_code == 400
    assert b"4111" not in response.content


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        pytest.param(b'{"records": [{"payload": "\xff"}]}', "application/json", 400, id="bad-utf8"),
        pytest.param(
            b'{"records": [{"payload": "\xed\xa0\x80"}]}',
            "application/json",
            400,
            id="utf8-encoded-surrogate",
        ),
        pytest.param(
            json.dumps(records_body("x")).encode("utf-16"),
            "application/json",
            400,
            id="utf16-body",
        ),
        pytest.param(b"", "application/json", 400, id="empty-body"),
        pytest.param(b"records=x", "application/x-www-form-urlencoded", 415, id="form"),
        pytest.param(json.dumps(records_body("x")), "text/plain", 415, id="text-plain"),
        pytest.param(
            json.dumps(records_body("x")),
            "application/json; charset=bz2_codec",
            400,
            id="bytes-codec-charset",
        ),
    ],
)
def test_a_body_that_is_not_json_text_is_refused_and_nothing_is_stored(
    staff, raw, content_type, status
):
    response = post(staff, raw, content_type=content_type)
    assert response.status_code == status, response.content
    assert list(response.json()["errors"]) in (["detail"], ["records"]), response.json()
    assert not Record.objects.exists()


def test_a_body_over_the_cap_is_413_and_nothing_is_stored(staff, settings):
    body = json.dumps(records_body(*["y" * 1000] * 300))  # 300 records, over 256 KiB
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = post(staff, body)
    assert response.status_code == 413, response.content
    assert list(response.json()["errors"]) == ["detail"]
    assert not Record.objects.exists()


def test_a_body_of_exactly_the_cap_is_stored(staff, settings):
    cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    room = cap - len(json.dumps(records_body("", "", "")))
    payloads = ["z" * (room // 3), "z" * (room // 3), "z" * (room - 2 * (room // 3))]
    body = json.dumps(records_body(*payloads))
    assert len(body) == cap
    response = post(staff, body)
    assert response.status_code == 201, response.content[:300]
    assert Record.objects.count() == 3
