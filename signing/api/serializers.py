"""API shapes: separate input and output serializers, no business logic.

Inputs are strict: a field of the wrong JSON type, a field nobody asked for, or a value out
of range is a field-level 400, never coerced and never a 500.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.conf import settings
from django.core.validators import MaxLengthValidator, MinLengthValidator, RegexValidator
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers
from rest_framework.fields import ProhibitNullCharactersValidator

from keyring.models import KeyLease, SigningKey
from records.models import Record
from records.payloads import (
    MAX_PAYLOAD_CHARS,
    MAX_RECORDS_PER_INGEST,
    json_type,
    payload_problem,
    quoted_names,
)
from signing.models import SigningRun
from signing.runs.dispatch import MAX_BATCH_SIZE

MAX_MESSAGE_CHARS = MAX_PAYLOAD_CHARS  # any stored payload can be verified by its text
# A many-item verify's limit: 1,000 records are checked in about 0.1 s.
MAX_VERIFY_ITEMS = 1_000
# Problems listed in one 400 about a request's records; the rest are counted.
MAX_PROBLEMS_LISTED = 10
# Standard base64 with its padding, as b64decode(validate=True) takes it.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z"
# A kid as the keyring makes them (and as /api/keys/{kid}/ matches them).
KID_PATTERN = r"^[A-Za-z0-9._-]+\Z"
MAX_KID_CHARS = 200


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know: a typo must not be silently ignored. The schema says
    so (`additionalProperties: false`, signing/api/openapi.py)."""

    refuses_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"detail": ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class JsonStringField(serializers.CharField):
    """A JSON string, nothing else: DRF's CharField takes 0 as "0" and 1.5 as "1.5"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class TextField(JsonStringField):
    """Unicode text without NUL (U+0000), which PostgreSQL cannot store and our keys never
    signed. The refusal is a RegexValidator rather than DRF's own check, so that the schema
    carries it as a `pattern`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators = [
            validator
            for validator in self.validators
            if not isinstance(validator, ProhibitNullCharactersValidator)
        ] + [RegexValidator(r"^[^\x00]*\Z", message="Null characters are not allowed.")]


class WholeNumberField(serializers.IntegerField):
    """A JSON integer, nothing else: not "12", not 12.0, not true."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class Base64Field(JsonStringField):
    """Bytes sent as standard base64, padded. Its length and pattern are the text's (as the
    schema says), checked before it is decoded."""

    default_error_messages = {"base64": "Not valid base64."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(
            RegexValidator(BASE64_PATTERN, message=self.error_messages["base64"])
        )

    def run_validation(self, data: Any = serializers.empty) -> bytes:  # type: ignore[override]
        text = super().run_validation(data)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.fail("base64")


class JsonBooleanField(serializers.BooleanField):
    """A JSON true or false, nothing else: not "true", not 1."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class RunCreateSerializer(StrictSerializer):
    """A run to start: both fields may be left out (`{}`)."""

    batch_size = WholeNumberField(
        required=False,
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        help_text="Records per batch, fixed for the whole run (default SIGNING_BATCH_SIZE).",
    )
    follow = JsonBooleanField(
        required=False,
        default=False,
        help_text=(
            "Keep the run active and sign records as they arrive, in batches cut when "
            "batch_size records are waiting or the oldest has waited SIGNING_FOLLOW_MAX_WAIT_MS, "
            "until POST /api/runs/{id}/stop/ (sign what has arrived, then complete) or cancel."
        ),
    )

    def validated_batch_size(self) -> int:
        return self.validated_data.get("batch_size", settings.SIGNING_BATCH_SIZE)


class RunProgressSerializer(serializers.Serializer):
    total_records = serializers.IntegerField()
    signed_records = serializers.IntegerField()
    percent = serializers.FloatField()
    total_batches = serializers.IntegerField()
    batches_signed = serializers.IntegerField()
    batches_in_flight = serializers.IntegerField()
    batches_pending = serializers.IntegerField(help_text="Batches waiting for a key.")
    batches_failed = serializers.IntegerField()
    batches_cancelled = serializers.IntegerField(
        help_text=(
            "A cancelled run's batches it did not sign (0 for any other run): their records "
            "stay unsigned until the next run signs them. The batch rows keep the status "
            "pending (the data contract's statuses); this run is over and nothing waits on them."
        )
    )
    keys_used = serializers.IntegerField()
    seconds = serializers.FloatField()
    records_per_second = serializers.FloatField()
    eta_seconds = serializers.FloatField(allow_null=True)


MERKLE_ROOT_HELP = (
    "The run's Merkle root, hex: RFC 6962 hashing over its batches' roots in seq order, each "
    "batch's root over its signatures in record id order (docs/architecture.md, Tamper "
    "evidence). Set when the run completes; null before, for a run that did not complete, "
    "and for one with a batch signed before roots existed."
)


class FollowActivitySerializer(serializers.Serializer):
    window_seconds = serializers.IntegerField(help_text="The figures cover this many seconds.")
    arrivals = serializers.IntegerField(help_text="Records that arrived in the window.")
    waiting = serializers.IntegerField(help_text="Records arrived and not cut into a batch yet.")
    backlog = serializers.IntegerField(help_text="Records arrived and not signed yet.")
    signed = serializers.IntegerField(help_text="Signatures in the window the latency is of.")
    latency_p50_ms = serializers.FloatField(
        allow_null=True, help_text="Median time from a record's created_at to its signed_at."
    )
    latency_p99_ms = serializers.FloatField(allow_null=True)
    latency_max_ms = serializers.FloatField(allow_null=True)
    stop_requested_at = serializers.DateTimeField(allow_null=True)


class CheckpointSerializer(serializers.Serializer):
    batches = serializers.IntegerField(
        help_text="The checkpoint covers the run's first this many batches, in seq order."
    )
    merkle_root = serializers.CharField(
        min_length=64,
        max_length=64,
        help_text="Hex SHA-256 Merkle root over those batches' roots (as the run's root is).",
    )
    kid = serializers.CharField(help_text="The key that signed the checkpoint input (JWKS).")
    signed_at = serializers.DateTimeField()


class RunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    audit_passed = serializers.SerializerMethodField()
    merkle_root = serializers.SerializerMethodField()
    follow_activity = serializers.SerializerMethodField()
    latest_checkpoint = serializers.SerializerMethodField()

    class Meta:
        model = SigningRun
        fields = [
            "id",
            "status",
            "batch_size",
            "record_count",
            "batch_count",
            "max_in_flight",
            "created_at",
            "started_at",
            "finished_at",
            "failure_reason",
            "follow",
            "stop_requested_at",
            "progress",
            "audit_passed",
            "merkle_root",
            "follow_activity",
            "latest_checkpoint",
        ]
        read_only_fields = fields

    @extend_schema_field(RunProgressSerializer)
    def get_progress(self, run: SigningRun) -> dict[str, Any]:
        from signing.runs.selectors import progress_of

        return progress_of(run).as_dict()

    @extend_schema_field(FollowActivitySerializer(allow_null=True))
    def get_follow_activity(self, run: SigningRun) -> dict[str, Any] | None:
        """A follow run's last minute: arrivals, backlog, latency; null for other runs."""
        from signing.runs.selectors import follow_activity

        activity = follow_activity(run)
        return None if activity is None else activity.as_dict()

    @extend_schema_field(CheckpointSerializer(allow_null=True))
    def get_latest_checkpoint(self, run: SigningRun) -> dict[str, Any] | None:
        """A follow run's latest signed checkpoint (every SIGNING_FOLLOW_CHECKPOINT_BATCHES
        batches: its signature is over "ckpt-v1\\n{run}\\n{batches}\\n{root hex}"); null for
        other runs and before the first."""
        from signing.runs.selectors import latest_checkpoint

        checkpoint = latest_checkpoint(run)
        return None if checkpoint is None else checkpoint.as_dict()

    def get_audit_passed(self, run: SigningRun) -> bool | None:
        """True or false once the run's audit is recorded; null before."""
        audit = getattr(run, "audit", None)
        return None if audit is None else audit.passed

    @extend_schema_field(
        serializers.CharField(
            allow_null=True, min_length=64, max_length=64, help_text=MERKLE_ROOT_HELP
        )
    )
    def get_merkle_root(self, run: SigningRun) -> str | None:
        return None if run.merkle_root is None else bytes(run.merkle_root).hex()


class KeySerializer(serializers.ModelSerializer):
    """The public part of a key only: the model's sealed private key is never a field."""

    lru_position = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text=(
            "The key's place among the enabled keys, held or free, in the order leases "
            "take them (rule 4: never used first, then the oldest last_used_at, ties by "
            "id). The next lease takes the free key (held false) with the lowest place, "
            "which is 1 only when key 1 is free: a held key keeps the place of its last use "
            "while its lease runs (so during a run the first places are mostly keys its "
            "batches hold), and the lease's release moves it to the end. Null for a "
            "disabled key, which no lease takes; the list gives the disabled keys after the "
            "enabled ones."
        ),
    )
    lease_count = serializers.IntegerField(read_only=True)
    held = serializers.BooleanField(read_only=True)
    retired_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text=(
            "When `manage.py keys retire` took the key out for good: never leased again, its "
            "sealed private key erased from the keyring, its public key kept for verifying "
            "(what it signs still verifies: see verify's retired_at). Null if not retired."
        ),
    )

    class Meta:
        model = SigningKey
        fields = [
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
        ]
        read_only_fields = fields


class RecordSerializer(serializers.ModelSerializer):
    signature = serializers.SerializerMethodField()
    kid = serializers.SerializerMethodField()
    batch = serializers.SerializerMethodField()
    signed_at = serializers.SerializerMethodField()

    class Meta:
        model = Record
        fields = ["id", "payload", "created_at", "signature", "kid", "batch", "signed_at"]
        read_only_fields = fields

    @staticmethod
    def _signature(record: Record):
        return getattr(record, "signature", None)

    def get_signature(self, record: Record) -> str | None:
        """The raw signature bytes in standard base64, or null if the record is unsigned."""
        signature = self._signature(record)
        return None if signature is None else base64.b64encode(signature.signature).decode()

    def get_kid(self, record: Record) -> str | None:
        signature = self._signature(record)
        return None if signature is None else signature.key.kid

    def get_batch(self, record: Record) -> int | None:
        signature = self._signature(record)
        return None if signature is None else signature.batch_id

    def get_signed_at(self, record: Record) -> str | None:
        signature = self._signature(record)
        return (
            None
            if signature is None
            else serializers.DateTimeField().to_representation(signature.signed_at)
        )


class NewRecordSerializer(StrictSerializer):
    """One record to add."""

    payload = TextField(
        max_length=MAX_PAYLOAD_CHARS,
        allow_blank=True,
        help_text=(
            "The text to sign, stored exactly as sent: any Unicode text except NUL (U+0000) "
            f"and lone surrogates, at most {MAX_PAYLOAD_CHARS:,} characters."
        ),
    )


@extend_schema_field(NewRecordSerializer(many=True))
class PayloadListField(serializers.Field):
    """`[{"payload": "…"}, …]` as the list of payloads, checked item by item. Every problem
    names its item (`records[3].payload`), never the payload's text; DRF's nested errors
    (a list of one dict per item) lose the place in the API's error shape. Checking by hand
    also costs a tenth of a serializer per item: 9 ms against 90 to 130 ms for 10,000."""

    default_error_messages = {
        "not_a_list": "Must be a JSON array of records, not {input_type}.",
        "empty": "Send at least one record.",
        "too_many": "Send at most {limit:,} records in one request, not {count:,}.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # For the schema's minItems and maxItems: to_internal_value refuses first.
        self.validators += [MinLengthValidator(1), MaxLengthValidator(MAX_RECORDS_PER_INGEST)]

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=json_type(data))
        if not data:
            self.fail("empty")
        if len(data) > MAX_RECORDS_PER_INGEST:
            self.fail("too_many", limit=MAX_RECORDS_PER_INGEST, count=len(data))
        payloads: list[str] = []
        problems: list[str] = []
        for index, item in enumerate(data):
            problem = _new_record_problem(item)
            if problem is None:
                payloads.append(item["payload"])
            else:
                problems.append(f"records[{index}]{problem}")
        if problems:
            listed = problems[:MAX_PROBLEMS_LISTED]
            if len(problems) > len(listed):
                listed.append(f"… and {len(problems) - len(listed):,} more records with problems.")
            raise serializers.ValidationError(listed)
        return payloads

    def to_representation(self, value: Any) -> Any:
        return [{"payload": payload} for payload in value]


def _new_record_problem(item: Any) -> str | None:
    """What is wrong with one item of `records`, as the rest of its message, or None."""
    if not isinstance(item, dict):
        return f" must be a JSON object, not {json_type(item)}."
    if unknown := set(item) - {"payload"}:
        return f": unknown field {quoted_names(unknown)}."
    if "payload" not in item:
        return ": the field 'payload' is required."
    reason = payload_problem(item["payload"])
    return None if reason is None else f".payload {reason}."


class IngestSerializer(StrictSerializer):
    """New records, `{"records": [{"payload": "…"}, …]}`: all stored, or none."""

    records = PayloadListField(
        help_text=f"1 to {MAX_RECORDS_PER_INGEST:,} records, stored together or not at all."
    )


class IngestedSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="The new records' ids, in request order."
    )


class VerifyRecordSerializer(StrictSerializer):
    """A stored record, checked again over its signing input."""

    record_id = WholeNumberField(min_value=1, max_value=2**63 - 1)


class VerifyMessageSerializer(StrictSerializer):
    """A message's exact UTF-8 bytes, checked against one of our keys' signature."""

    kid = JsonStringField(
        max_length=MAX_KID_CHARS,
        trim_whitespace=False,
        validators=[RegexValidator(KID_PATTERN, message="Not a kid (letters, digits, . _ -).")],
        help_text="A key of the keyring (GET /api/keys/, /.well-known/jwks.json).",
    )
    message = TextField(max_length=MAX_MESSAGE_CHARS, allow_blank=True)
    signature = Base64Field(max_length=1_000, help_text="The signature, standard base64.")


MESSAGE_FIELDS = {"kid", "message", "signature"}


class VerifySerializer(serializers.Serializer):
    """One item in either form, told apart by its fields: `record_id` alone
    (VerifyRecordSerializer), or `kid`, `message` and `signature` (VerifyMessageSerializer),
    as the schema's `oneOf` of the two says. Anything else is refused whole."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"detail": ["Expected a JSON object."]})
        by_record = "record_id" in data
        if by_record == bool(MESSAGE_FIELDS & set(data)):  # both forms, or neither
            raise serializers.ValidationError(
                {"detail": ["Send either record_id alone, or kid, message and signature."]}
            )
        form = VerifyRecordSerializer if by_record else VerifyMessageSerializer
        incoming = form(data=data)
        if not incoming.is_valid():
            raise serializers.ValidationError(incoming.errors)
        return incoming.validated_data


def verify_one_schema(*, many: bool = False) -> PolymorphicProxySerializer:
    """The schema of one item: exactly one of the two forms."""
    return PolymorphicProxySerializer(
        component_name="VerifyItem",
        serializers=[VerifyRecordSerializer, VerifyMessageSerializer],
        resource_type_field_name=None,
        many=many,
    )


RETIRED_AT_HELP = (
    "When the key the signature was checked with was retired (`manage.py keys retire`), "
    "null if it is not. A retired key still verifies: what it signed before then is "
    "genuine. But a key retired because it was suspected compromised may have signed "
    "anything since it leaked, so a valid signature by a retired key proves only what you "
    "know was signed before it leaked (a stored record's signature was made by this "
    "service under a lease)."
)


class VerifyResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    retired_at = serializers.DateTimeField(allow_null=True, help_text=RETIRED_AT_HELP)


@extend_schema_field(verify_one_schema(many=True))
class VerifyItems(serializers.ListField):
    """The items of a many-item verify, each a VerifySerializer's body; an error says which
    item (from 0) it is about: "item 3: record_id: A valid integer is required."."""

    def run_child_validation(self, data: list[Any]) -> list[Any]:
        try:
            return super().run_child_validation(data)
        except serializers.ValidationError as error:
            raise serializers.ValidationError(
                [
                    f"item {index}: {message}"
                    for index, detail in sorted(error.detail.items())
                    for message in _field_messages(detail)
                ]
            ) from None


def _field_messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [
            message if field in ("non_field_errors", "detail") else f"{field}: {message}"
            for field, messages in detail.items()
            for message in _field_messages(messages)
        ]
    if isinstance(detail, list):
        return [message for item in detail for message in _field_messages(item)]
    return [str(detail)]


class VerifyManySerializer(StrictSerializer):
    """Up to 1,000 items, each a one-item body; answered item by item."""  # MAX_VERIFY_ITEMS

    items = VerifyItems(
        child=VerifySerializer(),
        min_length=1,
        max_length=MAX_VERIFY_ITEMS,
        help_text=f"1 to {MAX_VERIFY_ITEMS:,} items, each a body of the one-item form.",
    )


class VerifyItemResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField(
        allow_null=True, help_text="null when the item could not be checked: see errors"
    )
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="why the item could not be checked, in the API's error shape",
    )
    retired_at = serializers.DateTimeField(
        allow_null=True,
        required=False,
        help_text=f"{RETIRED_AT_HELP} Present when the item was checked (valid not null).",
    )

    def to_representation(self, instance: dict[str, Any]) -> dict[str, Any]:
        """An item not checked has no key to speak of: its answer has no retired_at (null
        would say the key is not retired), where DRF would give a nullable field null."""
        answer = super().to_representation(instance)
        if "errors" in answer:
            del answer["retired_at"]
        return answer


class VerifyManyResultSerializer(serializers.Serializer):
    results = VerifyItemResultSerializer(many=True, help_text="one per item, in their order")


class LeaseSerializer(serializers.ModelSerializer):
    kid = serializers.CharField(source="key.kid", read_only=True)
    batch_seq = serializers.IntegerField(source="batch.seq", read_only=True)

    class Meta:
        model = KeyLease
        fields = [
            "id",
            "kid",
            "batch",
            "batch_seq",
            "token",
            "acquired_at",
            "expires_at",
            "released_at",
            "outcome",
        ]
        read_only_fields = fields
