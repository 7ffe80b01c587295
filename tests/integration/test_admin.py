"""The admin: every page opens, history stays read-only, and the sealed key never shows."""

from __future__ import annotations

import base64
import html
import random
import re
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from kernel import crypto
from keyring import sealing
from keyring.models import KeyDisabledPeriod, KeyLease, SigningKey
from keyring.services import create_keys, retire_key
from records.models import Record, Signature
from records.services import random_payloads
from signing.models import Batch, SigningRun
from signing.runs.dispatch import plan_run
from signing.runs.seeding import load_records
from tests.integration.factories import lease_batch, sign_and_release

pytestmark = pytest.mark.usefixtures("backend")

MODELS = (
    "records.record",
    "records.signature",
    "keyring.signingkey",
    "keyring.keylease",
    "signing.signingrun",
    "signing.batch",
)
READ_ONLY = tuple(model for model in MODELS if model != "keyring.signingkey")


@dataclass
class History:
    """A run of four batches: #1 signed and its lease released, #2 leased now, #3-4 pending."""

    run: SigningRun
    released: KeyLease
    held: KeyLease

    @property
    def signed_batch(self) -> Batch:
        return self.released.batch

    def sample(self, model: str):
        """One row of each admin's model, the one the page checks look for."""
        return {
            "records.record": lambda: Record.objects.get(pk=self.signed_batch.first_record_id),
            "records.signature": lambda: Signature.objects.order_by("pk").first(),
            "keyring.signingkey": lambda: self.held.key,
            "keyring.keylease": lambda: self.held,
            "signing.signingrun": lambda: self.run,
            "signing.batch": lambda: self.signed_batch,
        }[model]()


@pytest.fixture
def history(cast) -> History:
    sign_and_release(cast.lease.id)
    held = lease_batch(cast.run.batches.get(seq=2))
    return History(
        run=cast.run,
        released=KeyLease.objects.get(pk=cast.lease.id),
        held=KeyLease.objects.get(pk=held.id),
    )


def admin_url(model: str, view: str, *args: object) -> str:
    return reverse(f"admin:{model.replace('.', '_')}_{view}", args=args)


def page(client, url: str, **params: object) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, url
    return response.content.decode()


def listed(client, model: str, **params: object) -> list:
    """The rows an admin list shows for these filters or search."""
    response = client.get(admin_url(model, "changelist"), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def form_controls(content: str) -> set[str]:
    """Names of the inputs, selects and text areas of a page, but the CSRF token's."""
    names = re.findall(r'<(?:input|select|textarea)\b[^>]*\bname="([^"]+)"', content)
    return set(names) - {"csrfmiddlewaretoken"}


# What each change page must show, so a 200 with the wrong or an empty page still fails.
EXPECTED_ON_CHANGE_PAGE = {
    "records.record": lambda row: "signature of this record",
    "records.signature": lambda row: bytes(row.signature).hex(),
    "keyring.signingkey": lambda row: row.kid,
    "keyring.keylease": lambda row: "held for",
    "signing.signingrun": lambda row: "4 batches",
    "signing.batch": lambda row: "signatures of this batch",
}


@pytest.mark.parametrize("model", MODELS)
def test_list_and_change_page_open_for_a_superuser(admin_client, history, model):
    row = history.sample(model)
    change_url = admin_url(model, "change", row.pk)

    assert change_url in page(admin_client, admin_url(model, "changelist"))
    assert EXPECTED_ON_CHANGE_PAGE[model](row) in page(admin_client, change_url)


def grow(history: History) -> None:
    """More rows in every table the admin lists: signatures, leases, batches, runs, keys."""
    sign_and_release(history.held.pk)
    lease_batch(history.run.batches.get(seq=3))
    create_keys(count=2, kek=sealing.kek_from_environment())
    load_records(random_payloads(10, rng=random.Random(99)))
    SigningRun.objects.filter(pk=history.run.pk).update(status=SigningRun.Status.CANCELLED)
    plan_run(batch_size=3)


def queries_per_list(client) -> dict[str, int]:
    counts = {}
    for model in MODELS:
        url = admin_url(model, "changelist")
        client.get(url)  # warm any per-process cache (content types, sessions)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        counts[model] = len(captured)
    return counts


def test_lists_cost_the_same_queries_whatever_their_rows(admin_client, history):
    before = queries_per_list(admin_client)
    grow(history)
    assert Signature.objects.count() == 10
    assert KeyLease.objects.count() == 3
    assert queries_per_list(admin_client) == before


@pytest.mark.parametrize("model", READ_ONLY)
def test_history_cannot_be_added_changed_or_deleted(admin_client, history, model):
    row = history.sample(model)
    table = type(row).objects
    rows_before = table.count()

    assert admin_client.get(admin_url(model, "add")).status_code == 403
    assert admin_client.post(admin_url(model, "add"), {}).status_code == 403
    assert admin_client.post(admin_url(model, "change", row.pk), {}).status_code == 403
    assert admin_client.get(admin_url(model, "delete", row.pk)).status_code == 403
    assert admin_client.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    changelist = page(admin_client, admin_url(model, "changelist"))
    assert admin_url(model, "add") not in changelist
    assert "delete_selected" not in changelist
    change_page = page(admin_client, admin_url(model, "change", row.pk))
    assert form_controls(change_page) == set()
    assert table.count() == rows_before
    assert table.filter(pk=row.pk).exists()


def test_a_runs_batch_size_is_never_a_form_field(admin_client, history):
    change_page = page(admin_client, admin_url("signing.signingrun", "change", history.run.pk))
    assert "batch size" in change_page.lower()
    assert "batch_size" not in form_controls(change_page)


def secret_spellings(key: SigningKey) -> list[str]:
    """Every way the sealed key's bytes or its field could appear in a page."""
    raw = bytes(SigningKey.objects.get(pk=key.pk).encrypted_private_key)
    assert len(raw) > 16, "the sealed key is real bytes"
    return [
        "encrypted_private_key",
        "encrypted private key",
        "<memory at",
        "&lt;memory at",
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        repr(raw),
        html.escape(repr(raw)),
    ]


def test_key_pages_never_show_the_sealed_private_key(admin_client, history):
    key, lease = history.released.key, history.released
    pages = {
        "key change page": page(admin_client, admin_url("keyring.signingkey", "change", key.pk)),
        "key list": page(admin_client, admin_url("keyring.signingkey", "changelist")),
        "key search": page(admin_client, admin_url("keyring.signingkey", "changelist"), q=key.kid),
        "key history": page(admin_client, admin_url("keyring.signingkey", "history", key.pk)),
        "lease page": page(admin_client, admin_url("keyring.keylease", "change", lease.pk)),
        "lease list": page(admin_client, admin_url("keyring.keylease", "changelist")),
        "signature list": page(admin_client, admin_url("records.signature", "changelist")),
    }
    for name, content in pages.items():
        assert key.kid in content, f"{name} does not show the key at all"
        lowered = content.lower()
        for spelling in secret_spellings(key):
            assert spelling.lower() not in lowered, f"{name} shows {spelling[:20]!r}"


def test_the_sealed_key_cannot_be_searched_or_filtered_on(admin_client, history):
    key = history.released.key
    sealed = bytes(key.encrypted_private_key)
    assert listed(admin_client, "keyring.signingkey", q=sealed.hex()[:8]) == []
    # A filter on the sealed bytes would be an oracle: ?…__gt= reads them a byte at a time.
    probes = {
        "keyring.signingkey": "encrypted_private_key__gt",
        "keyring.keylease": "key__encrypted_private_key__gt",
        "records.signature": "key__encrypted_private_key__gt",
    }
    for model, lookup in probes.items():
        response = admin_client.get(admin_url(model, "changelist"), {lookup: "00"})
        assert response.status_code == 400, model


def test_the_key_form_writes_enabled_and_nothing_else(admin_client, history):
    key = SigningKey.objects.get(pk=history.released.key_id)
    sealed = bytes(key.encrypted_private_key)
    change_url = admin_url("keyring.signingkey", "change", key.pk)
    assert form_controls(page(admin_client, change_url)) == {"enabled", "_save", "_continue"}
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.post(
            change_url,
            {
                "kid": "renamed",
                "algorithm": crypto.ECDSA_P256_SHA256,
                "last_used_at": "",
                "encrypted_private_key": base64.b64encode(b"x" * 64).decode(),
                "_save": "Save",
            },  # "enabled" unchecked: a browser leaves it out
        )
    assert response.status_code == 302
    after = SigningKey.objects.get(pk=key.pk)
    assert after.enabled is False
    assert (after.kid, after.algorithm, after.last_used_at) == (
        key.kid,
        key.algorithm,
        key.last_used_at,
    )
    assert bytes(after.encrypted_private_key) == sealed
    updates = [q["sql"] for q in captured if q["sql"].startswith('UPDATE "keyring_signingkey"')]
    assert len(updates) == 1
    # A stale page must not write back the last_used_at a release set meanwhile (rule 4).
    assert '"last_used_at"' not in updates[0]
    assert '"enabled"' in updates[0]


def test_keys_cannot_be_added_or_deleted(admin_client, history):
    key = history.held.key
    assert admin_client.get(admin_url("keyring.signingkey", "add")).status_code == 403
    assert admin_client.get(admin_url("keyring.signingkey", "delete", key.pk)).status_code == 403
    changelist = page(admin_client, admin_url("keyring.signingkey", "changelist"))
    assert admin_url("keyring.signingkey", "add") not in changelist
    assert "delete_selected" not in changelist
    assert SigningKey.objects.filter(pk=key.pk).exists()


def run_key_action(client, action: str, keys: list[SigningKey]):
    return client.post(
        admin_url("keyring.signingkey", "changelist"),
        {"action": action, "_selected_action": [key.pk for key in keys]},
    )


def test_keys_are_disabled_and_enabled_by_the_admin_actions(admin_client, history):
    first, second, third = SigningKey.objects.order_by("id")
    last_used = {key.pk: key.last_used_at for key in (first, second, third)}

    assert run_key_action(admin_client, "disable_keys", [first, second]).status_code == 302
    assert dict(SigningKey.objects.values_list("id", "enabled")) == {
        first.pk: False,
        second.pk: False,
        third.pk: True,
    }

    disabled_at = dict(SigningKey.objects.values_list("id", "disabled_at"))
    assert disabled_at[first.pk] is not None  # stamped, as `keys disable` stamps it
    assert disabled_at[second.pk] is not None
    assert disabled_at[third.pk] is None

    assert run_key_action(admin_client, "enable_keys", [second]).status_code == 302
    assert dict(SigningKey.objects.values_list("id", "enabled")) == {
        first.pk: False,
        second.pk: True,
        third.pk: True,
    }
    assert dict(SigningKey.objects.values_list("id", "last_used_at")) == last_used
    assert dict(SigningKey.objects.values_list("id", "disabled_at")) == {
        first.pk: disabled_at[first.pk],  # untouched by the enable
        second.pk: None,
        third.pk: None,
    }
    # ...and the time the second spent out of the keyring stays on record for the audit
    periods = KeyDisabledPeriod.objects.order_by("key_id").values_list(
        "key_id", "disabled_at", "enabled_at"
    )
    [(_, _, still_open), (_, since, until)] = periods
    assert still_open is None
    assert since == disabled_at[second.pk]
    assert until > since
    second_page = page(admin_client, admin_url("keyring.signingkey", "change", second.pk))
    assert f"{since:%Y-%m-%d %H:%M:%S} to {until:%Y-%m-%d %H:%M:%S}" in second_page


def test_a_retired_key_stays_out_whatever_the_admin_asks(admin_client, history):
    retired = SigningKey.objects.get(pk=history.released.key_id)  # free: its lease ended
    retire_key(kid=retired.kid)
    change_url = admin_url("keyring.signingkey", "change", retired.pk)

    assert form_controls(page(admin_client, change_url)) <= {"_save", "_continue"}
    admin_client.post(change_url, {"enabled": "on", "_save": "Save"})
    response = run_key_action(admin_client, "enable_keys", [retired])

    assert SigningKey.objects.get(pk=retired.pk).enabled is False
    shown = [str(message) for message in response.wsgi_request._messages]
    assert shown[-1] == "0 key(s) enabled. 1 retired key(s) left out: they stay out for good."


def test_key_list_counts_leases_and_shows_which_key_is_held(admin_client, history):
    rows = {
        key.pk: (key.lease_count, key.held) for key in listed(admin_client, "keyring.signingkey")
    }
    idle = SigningKey.objects.exclude(pk__in=[history.held.key_id, history.released.key_id]).get()
    assert rows == {
        history.released.key_id: (1, False),
        history.held.key_id: (1, True),
        idle.pk: (0, False),
    }
    assert [key.pk for key in listed(admin_client, "keyring.signingkey", held="yes")] == [
        history.held.key_id
    ]


def test_leases_filter_by_state_and_outcome(admin_client, history):
    def ids(**params) -> list[int]:
        return [lease.pk for lease in listed(admin_client, "keyring.keylease", **params)]

    assert ids(state="open") == [history.held.pk]
    assert ids(state="closed") == [history.released.pk]
    assert ids(outcome="completed") == [history.released.pk]
    assert ids(q=str(history.held.batch_id)) == [history.held.pk]


def test_lease_list_shows_how_long_each_key_was_held(admin_client, history):
    content = page(admin_client, admin_url("keyring.keylease", "changelist"))
    duration = history.released.released_at - history.released.acquired_at
    assert f"{duration.total_seconds():.3f} s" in content
    assert "held for " in content


def test_a_signature_shows_as_hex_and_base64_never_as_bytes(admin_client, history):
    signature = history.sample("records.signature")
    raw = bytes(signature.signature)
    content = page(admin_client, admin_url("records.signature", "change", signature.pk))
    assert raw.hex() in content
    assert base64.b64encode(raw).decode() in content
    assert html.escape(repr(raw)) not in content
    assert "memory at" not in content


def test_a_batch_shows_its_merkle_root_as_hex(admin_client, history):
    batch = history.sample("signing.batch")
    content = page(admin_client, admin_url("signing.batch", "change", batch.pk))
    assert bytes(batch.merkle_root).hex() in content
    assert "memory at" not in content


def test_searches_by_id_use_the_number(admin_client, history):
    batch = history.run.batches.get(seq=3)
    middle = batch.first_record_id + 2
    assert [row.pk for row in listed(admin_client, "records.record", q=str(middle))] == [middle]
    assert [row.pk for row in listed(admin_client, "signing.batch", q=str(middle))] == [batch.pk]
    signed = history.signed_batch.first_record_id
    assert [row.pk for row in listed(admin_client, "records.signature", q=str(signed))] == [signed]
    # Too large for a bigint (searched as text instead), or no such kid: no error, no rows.
    assert listed(admin_client, "records.record", q="9" * 30) == []
    assert listed(admin_client, "records.signature", q="no-such-kid") == []


def test_records_filter_by_signed(admin_client, history):
    signed = {row.pk for row in listed(admin_client, "records.record", signed="yes")}
    unsigned = {row.pk for row in listed(admin_client, "records.record", signed="no")}
    assert signed == set(Signature.objects.values_list("pk", flat=True))
    assert len(signed) == 5
    assert len(unsigned) == 15
    assert not signed & unsigned


@pytest.mark.parametrize("model", MODELS)
def test_anonymous_users_are_sent_to_the_login_page(client, history, model):
    url = admin_url(model, "changelist")
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
    assert "next=" in response.url
