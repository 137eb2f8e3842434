"""The OpenAPI schema's error responses, documented once for every operation.

Every error has one body (aggregator/api/exceptions.py), so the schema names it once, as the `Error`
component, and `AutoSchema` adds to each operation the error statuses its view can answer, read from the
view itself rather than written on each one:

- 400 `validation_error` when the request carries something to validate: a body or query parameters, or an
  unsafe method (services refuse a change with a field-named error even when there is no body);
- 401 when the view reads credentials (a missing, malformed, expired or revoked one);
- 403 when it reads credentials too: a role too low for the action, the MFA gate, a session's CSRF check;
- 404 when the path names an object (another workspace's object is a 404 as well);
- 415 when it takes a body, sent in a content type it does not parse (bodies are JSON; uploads multipart);
- 429 when the view has throttles (sign-in and reset rates, django-axes lockouts), with `retry_after`.

A view whose code answers one of these statuses where its attributes do not show it (a sign-in's 401, a 404
for an object named in the body) lists it in `error_statuses`; a status outside this list goes in its own
`extend_schema(responses=…)`, with `ERROR_RESPONSE` as the body.

A `list` action that answers one object rather than a page of them (a summary, a catalogue) says so with
`list_is_object = True`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="What went wrong, for programs: `validation_error`, `not_authenticated`, "
        "`authentication_failed`, `permission_denied`, `not_found`, `throttled`, `locked_out`, …"
    )
    message = serializers.CharField(help_text="What went wrong, for people.")
    # DRF's metaclass takes declared fields off the class: this does not shadow Serializer.fields.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: each bad field (dotted for nested ones, e.g. `config.port`, "
        "`nodes.late.config.expression`) with its messages.",
    )
    retry_after = serializers.IntegerField(
        required=False, help_text="429 from a rate limit only: seconds until a request is let through again."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_RESPONSE = OpenApiResponse(ErrorSerializer, description="The error body.")

DESCRIPTIONS = {
    "400": "The request is not valid: `fields` names each bad field.",
    "401": "No valid credentials: missing, malformed, expired or revoked.",
    "403": "Not allowed: the role in the workspace, an API key's scopes, the MFA policy or a CSRF check.",
    "404": "No such object, or one the caller may not see.",
    "415": "The body's content type is not one this operation takes.",
    "429": "Too many requests: wait `retry_after` seconds.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        codes = [code for code in self.error_statuses(operation) if code not in responses]
        if codes:
            ref = self.resolve_serializer(ErrorSerializer, "response").ref
            for code in codes:
                responses[code] = {
                    "description": DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": ref}},
                }
            operation["responses"] = dict(sorted(responses.items()))
        return operation

    def error_statuses(self, operation: dict[str, Any]) -> list[str]:
        parameters = operation.get("parameters", [])
        codes = []
        if (
            "requestBody" in operation
            or self.method in UNSAFE_METHODS
            or any(p.get("in") == "query" for p in parameters)
        ):
            codes.append("400")
        if self.view.get_authenticators():
            codes += ["401", "403"]
        if any(p.get("in") == "path" for p in parameters):
            codes.append("404")
        if "requestBody" in operation:
            codes.append("415")
        if self.view.get_throttles():
            codes.append("429")
        codes += getattr(self.view, "error_statuses", ())
        return sorted(set(codes))

    def _is_list_view(self, serializer: Any = None) -> bool:
        # drf-spectacular takes every `list` action for a list of objects and documents an array.
        if getattr(self.view, "list_is_object", False):
            return False
        return bool(super()._is_list_view(serializer))
