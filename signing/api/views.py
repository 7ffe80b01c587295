"""The REST API: thin views over the same services the dashboard and commands use."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import resolve
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, mixins, permissions, serializers, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from keyring.models import KeyLease
from keyring.selectors import keys_for_display, public_jwks
from records.exceptions import IngestRefused
from records.models import Record
from records.services import ingest_records
from signing.api import serializers as api
from signing.api.authentication import token_expires_at, valid_token_for
from signing.api.openapi import ID_PATTERN
from signing.api.parsers import StrictJSONParser
from signing.models import SigningRun
from signing.ops.logins import lockout_message
from signing.runs.dispatch import cancel_run, check_ready_to_sign, start_run
from signing.runs.exceptions import (
    NotReadyToSign,
    RunAlreadyActive,
    RunNotActive,
    RunNotFollowing,
)
from signing.runs.follow import records_arrived, start_follow_run, stop_run
from signing.runs.services import verify_many, verify_message, verify_record

CONFLICT = OpenApiResponse(
    description="Another run is active (or this one is not), or no key can sign."
)


def _errors(status_code: int, **fields: str) -> Response:
    return Response({"errors": {k: [v] for k, v in fields.items()}}, status=status_code)


class IsStaffToChange(permissions.BasePermission):
    """Reads for any authenticated user; starting and cancelling runs for staff only."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_staff)


class CanIngestRecords(permissions.BasePermission):
    """Staff, or a user with the permission `records.add_record`: the `producers` group has
    it (records migration 0010), and an administrator may grant it to others."""

    message = "Only staff and members of the producers group may add records."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and (user.is_staff or user.has_perm("records.add_record"))
        )


class RunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Signing runs. A run's batch size is fixed: there is no PUT or PATCH."""

    queryset = SigningRun.objects.select_related("audit").order_by("-id")
    serializer_class = api.RunSerializer
    permission_classes = [permissions.IsAuthenticated, IsStaffToChange]
    lookup_value_regex = ID_PATTERN
    throttle_scope = "start-run"

    def get_throttles(self):
        return [ScopedRateThrottle()] if self.action == "create" else []

    @extend_schema(
        request=api.RunCreateSerializer,
        responses={201: api.RunSerializer, 409: CONFLICT},
        summary="Start a run",
    )
    def create(self, request: Request) -> Response:
        if request.stream is None:  # no body at all: say so rather than start a default run
            raise ParseError('Send a JSON object, e.g. {"batch_size": 1000} or {}.')
        incoming = api.RunCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            check_ready_to_sign()
            start = start_follow_run if incoming.validated_data["follow"] else start_run
            run = start(batch_size=incoming.validated_batch_size())
        except (NotReadyToSign, RunAlreadyActive) as error:
            return _errors(status.HTTP_409_CONFLICT, detail=str(error))
        return Response(api.RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: api.RunSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        if not cancel_run(run.pk):
            return _errors(status.HTTP_409_CONFLICT, detail=f"run {run.pk} is not active")
        run.refresh_from_db()
        return Response(api.RunSerializer(run).data)

    @extend_schema(
        request=None,
        responses={
            200: api.RunSerializer,
            409: OpenApiResponse(description="The run does not follow, or has finished."),
        },
        summary="Stop a follow run gracefully",
    )
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        """Sign what has arrived, then complete: the records committed before the stop are
        cut and signed, none after. Asking again while it stops changes nothing."""
        run = self.get_object()
        try:
            run = stop_run(run.pk)
        except (RunNotFollowing, RunNotActive) as error:
            return _errors(status.HTTP_409_CONFLICT, detail=str(error))
        return Response(api.RunSerializer(run).data)

    @extend_schema(responses=api.LeaseSerializer(many=True))
    @action(detail=True, methods=["get"])
    def leases(self, request: Request, pk: str) -> Response:
        """Every lease of the run's batches, in the order they were granted (the timeline)."""
        run = self.get_object()
        leases = (
            KeyLease.objects.filter(batch__run=run)
            .select_related("key", "batch")
            .order_by("acquired_at", "id")
        )
        page = self.paginate_queryset(leases)
        return self.get_paginated_response(api.LeaseSerializer(page, many=True).data)


class KeyViewSet(viewsets.ReadOnlyModelViewSet):
    """Keys in the order the next leases take them (enabled keys LRU first, then the
    disabled ones); public parts only."""

    serializer_class = api.KeySerializer
    lookup_field = "kid"
    lookup_value_regex = r"[A-Za-z0-9._-]{1,200}"

    def get_queryset(self):
        return keys_for_display()


class RecordViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A record with its signature (base64), the kid that signed it and its batch."""

    queryset = Record.objects.select_related("signature", "signature__key")
    serializer_class = api.RecordSerializer
    lookup_value_regex = ID_PATTERN

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.action == "create":
            return [permissions.IsAuthenticated(), CanIngestRecords()]
        return super().get_permissions()

    @extend_schema(
        request=api.IngestSerializer,
        responses={
            201: api.IngestedSerializer,
            400: OpenApiResponse(
                description="A record or the body is wrong (each problem named): none stored."
            ),
            403: OpenApiResponse(description="Neither staff nor in the producers group."),
        },
        summary="Add records (staff and producers)",
    )
    def create(self, request: Request) -> Response:
        """Store 1 to 10,000 records in one transaction, all or none; their ids in order."""
        incoming = api.IngestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            ids = ingest_records(incoming.validated_data["records"])
        except IngestRefused as error:  # the serializer checks the same rules first
            return _errors(status.HTTP_400_BAD_REQUEST, records=str(error))
        records_arrived()  # a follow run cuts a batch now if one is due (never raises)
        return Response({"ids": ids}, status=status.HTTP_201_CREATED)


class VerifyView(APIView):
    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="Verify",  # VerifyRequest, as request components are named
            serializers=[
                api.VerifyRecordSerializer,
                api.VerifyMessageSerializer,
                api.VerifyManySerializer,
            ],
            resource_type_field_name=None,
        ),
        responses={
            200: PolymorphicProxySerializer(
                component_name="VerifyResponse",
                serializers=[api.VerifyResultSerializer, api.VerifyManyResultSerializer],
                resource_type_field_name=None,
            ),
            400: OpenApiResponse(description="A body of none of the three forms."),
            404: OpenApiResponse(
                description="One-item form: no signed record has this id, or no key this kid."
            ),
        },
        summary="Verify stored records, or messages signed by our keys: one, or up to 1,000",
        description=(
            'One item: `{"record_id": …}` or `{"kid": …, "message": …, '
            '"signature": base64}` answers `{"valid": …, "retired_at": …}` (null unless the '
            'key is retired: see the field). Many: `{"items": [one-item '
            f'bodies, 1 to {api.MAX_VERIFY_ITEMS:,}]}}` answers `{{"results": [...]}}`, one per '
            'item in order: `{"valid": …, "retired_at": …}`, or `{"valid": null, "errors": '
            "{…}}` for an unsigned record or an unknown kid (where the one-item form answers "
            "404). An item of the wrong shape refuses the whole request (400), naming the item."
        ),
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict) and "items" in request.data:
            return self.verify_many(request)
        incoming = api.VerifySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        if "record_id" in data:
            verdict = verify_record(data["record_id"])
            if verdict is None:
                return _errors(status.HTTP_404_NOT_FOUND, record_id="No signed record has this id.")
            return Response(api.VerifyResultSerializer(verdict).data)
        verdict = verify_message(
            kid=data["kid"], message=data["message"], signature=data["signature"]
        )
        if verdict is None:  # as for an unknown record: what the request names does not exist
            return _errors(status.HTTP_404_NOT_FOUND, kid="No key has this kid.")
        return Response(api.VerifyResultSerializer(verdict).data)

    @staticmethod
    def verify_many(request: Request) -> Response:
        incoming = api.VerifyManySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        verdicts = verify_many(incoming.validated_data["items"])
        results = [
            {"valid": verdict.valid, "retired_at": verdict.retired_at}
            if verdict.errors is None
            else {"valid": None, "errors": verdict.errors}
            for verdict in verdicts
        ]
        return Response(api.VerifyManyResultSerializer({"results": results}).data)


class JwksView(APIView):
    """The keyring's public keys as a JSON Web Key Set: public, no login."""

    permission_classes = [permissions.AllowAny]
    authentication_classes = []

    @extend_schema(
        responses=inline_serializer(
            "Jwks", {"keys": serializers.ListField(child=serializers.DictField())}
        )
    )
    def get(self, request: Request) -> Response:
        return Response(public_jwks())


class LockedOut(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"


class ObtainExpiringToken(ObtainAuthToken):
    """POST username and password: the user's token and when it expires.

    Logging in needs no credentials but these: no authentication runs (a stale token in a
    client's headers must not refuse the login that replaces it), and JSON is read strictly
    as everywhere in the API (URL-encoded forms too, as DRF's view takes them)."""

    authentication_classes = ()
    permission_classes = (permissions.AllowAny,)
    parser_classes = (StrictJSONParser, FormParser)  # no multipart: file parts escape the body cap

    @extend_schema(
        request=ObtainAuthToken.serializer_class,
        responses={
            200: inline_serializer(
                "IssuedToken",
                {"token": serializers.CharField(), "expires_at": serializers.DateTimeField()},
            ),
            400: OpenApiResponse(description="Wrong username or password, or a field missing."),
            429: OpenApiResponse(description="Too many failed logins: locked out for a while."),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except exceptions.ValidationError:
            # axes marks the request it was given: DRF's, this one.
            if getattr(request, "axes_locked_out", False):
                raise LockedOut(lockout_message()) from None
            raise
        token = valid_token_for(serializer.validated_data["user"])
        return Response({"token": token.key, "expires_at": token_expires_at(token)})


@csrf_exempt  # answers every method alike; it changes nothing
def not_found(request: HttpRequest, path: str) -> JsonResponse:
    """Any /api/ path no endpoint matches: a 404 in the API's error shape, not Django's HTML
    page, naming the trailing slash when that is all that is missing."""
    message = "No API endpoint has this path (the endpoints: /api/docs/)."
    path = request.path_info  # what resolve() takes, under a script prefix too
    if not path.endswith("/") and resolve(path + "/").url_name != NOT_FOUND:
        message = f"No API endpoint has this path: did you mean {request.path}/ ?"
    return JsonResponse({"errors": {"detail": [message]}}, status=status.HTTP_404_NOT_FOUND)


NOT_FOUND = "api-not-found"
