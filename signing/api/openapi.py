"""The OpenAPI document says exactly what the API does: every status an operation can answer,
with the one error shape; request bodies closed where unknown fields are refused.

drf-spectacular documents the success answers it can see. The error answers come from the
framework around a view (authentication, permissions, throttles, the parsers, Django's body
cap), so they are derived here from the same view attributes DRF enforces, once for every
operation, rather than repeated by hand on each view where one would be forgotten.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from rest_framework import permissions, serializers

# Ids in URLs are at most 18 digits (the URL pattern): a longer one names nothing and never
# reaches PostgreSQL's bigint.
ID_PATTERN = r"[0-9]{1,18}"
MAX_ID_IN_URL = 10**18 - 1

# What each derived status means, for every operation it applies to.
ERROR_DESCRIPTIONS = {
    "400": "The body or a query parameter is wrong: each problem under its field's name "
    "(or `detail`).",
    "401": "No credentials, or a token that is wrong or has expired.",
    "403": "Authenticated but not allowed here (staff only, or the producers group for "
    "records), or a session request without its CSRF token.",
    "404": "Nothing has this id.",
    "413": "The body is over the request size cap "
    f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes).",
    "415": "The body is not in a media type this operation reads (its requestBody's).",
    "429": "Too many requests: try again later (the Retry-After header says when).",
}


# The docstring below is the schema's description of the shape signing/api/errors.py makes.
class ErrorsSerializer(serializers.Serializer):
    """Every 4xx answer's body: `{"errors": {"field": ["message", …]}}`. Problems not about
    one field are under `detail`."""

    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages by the name of the field they are about, or `detail`.",
    )


class ContractAutoSchema(AutoSchema):
    """AutoSchema with the error answers, closed request bodies and typed ids."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        if "requestBody" in operation:  # every body this API reads is a JSON object it needs
            operation["requestBody"]["required"] = True
        errors = {
            "application/json": {
                "schema": self.resolve_serializer(ErrorsSerializer, "response").ref
            }
        }
        responses = operation["responses"]
        for status_code in self._error_statuses(operation):
            if status_code not in responses:
                responses[status_code] = {"description": ERROR_DESCRIPTIONS[status_code]}
            responses[status_code].setdefault("content", errors)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_statuses(self, operation: dict[str, Any]) -> list[str]:
        """The 4xx answers the framework gives this operation, from what DRF enforces on it:
        its declared errors (409, …) are documented by its view."""
        reads_body = "requestBody" in operation
        locations = {parameter["in"] for parameter in operation.get("parameters", [])}
        authenticates = bool(self.view.get_authenticators())
        statuses = [code for code in operation["responses"] if code.startswith("4")]
        if reads_body or "query" in locations:
            statuses.append("400")
        if authenticates:
            statuses.append("401")
        if authenticates and self.method not in permissions.SAFE_METHODS:
            statuses.append("403")  # staff-only changes, and CSRF for session requests
        if "path" in locations:
            statuses.append("404")
        if reads_body:
            statuses += ["413", "415"]
        if self.view.get_throttles():
            statuses.append("429")
        return sorted(set(statuses))

    def _map_serializer(self, serializer: Any, direction: str, bypass_extensions: bool = False):
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction == "request" and getattr(serializer, "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        """drf-spectacular writes a blank-allowed string with a pattern as `oneOf` [pattern,
        empty string]; where the pattern takes "" too (TextField's), "" matched both, and
        `oneOf` made it invalid. Such a field is its one pattern; otherwise `anyOf`."""
        super()._insert_field_validators(field, schema)
        one_of = schema.get("oneOf", [])
        if len(one_of) != 2 or one_of[1] != {"type": "string", "maxLength": 0}:
            return
        constrained = one_of[0]
        if set(constrained) <= {"type", "maxLength", "pattern"} and re.search(
            constrained.get("pattern", ""), ""
        ):
            del schema["oneOf"]
            schema.update(constrained)
        else:
            schema["anyOf"] = schema.pop("oneOf")

    def _resolve_path_parameters(self, variables: list[str]) -> list[dict[str, Any]]:
        """A numeric id in a URL as an integer (its URL pattern allows 18 digits), so that
        clients take and send a number."""
        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            if parameter["schema"].get("pattern") == f"^{ID_PATTERN}$":
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID_IN_URL}
        return parameters
