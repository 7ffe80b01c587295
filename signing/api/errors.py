"""One error shape for every 4xx the API returns: `{"errors": {field: [messages]}}`.

Field errors keep their field names; errors not tied to a field (a bad token, a parse
error, a throttle) go under "detail". Never a traceback, never a 5xx for bad input.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):  # JSON bodies are read whole: Django checks size
        return Response(
            {"errors": {"detail": ["The request body is too large."]}},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = {"errors": _as_field_errors(response.data)}
    return response


def _as_field_errors(data: Any) -> dict[str, list[str]]:
    if isinstance(data, dict):  # each value one message, or a list of them (never repr)
        return {
            ("detail" if field == "non_field_errors" else field): _messages(value)
            for field, value in data.items()
        }
    return {"detail": _messages(data)}


def _messages(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [message for item in value for message in _messages(item)]
    if isinstance(value, dict):
        return [f"{key}: {message}" for key, item in value.items() for message in _messages(item)]
    return [str(value)]
