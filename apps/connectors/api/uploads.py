"""`POST /api/v1/uploads/`: a file sent as multipart form data, stored by `services.upload_create`.

The size limit (`AGGREGATOR_UPLOAD_MAX_BYTES`) holds before the body is read, not after:

- a request whose `Content-Length` already says it is too large is refused before a byte of the body is
  read (the body is parsed lazily, on the first access to `request.data`);
- otherwise `UploadLimitHandler`, the first of the request's upload handlers, counts the file bytes as the
  multipart parser hands them over and stops the upload at the first byte over the limit
  (`StopUpload(connection_reset=True)`: the rest of the body is not read, and Django closes, and so deletes,
  the temporary file the next handler was spooling to);
- `upload_store` enforces the same limit again while it copies, and never leaves a partial file.

A caller who may not upload anywhere (no workspace where they are editor or admin) is refused before the
body is read as well.
"""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.workspaces import workspace_for_write
from apps.connectors import services
from apps.users.selectors import Role, User, Workspace, workspace_ids_for_user

# What a multipart body may carry besides the file itself: boundaries, part headers and the small form
# fields (`workspace`). A Content-Length over the file limit plus this is refused unread.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _limit() -> int:
    return int(settings.AGGREGATOR_UPLOAD_MAX_BYTES)


def _too_large(name: str | None, limit: int) -> str:
    # The same wording as upload_store's own refusal.
    label = repr(name) if name else "The upload"
    return f"{label} is larger than the upload limit of {limit} bytes."


class UploadLimitHandler(FileUploadHandler):
    """Counts the file bytes of one request and stops the upload once they pass the limit. Passes every
    chunk on unchanged, so the next handler (memory or temporary file) never receives more than the limit."""

    def __init__(self, request: HttpRequest | None = None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.refused: str | None = None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.refused = _too_large(self.file_name, self.limit)
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the file object


class UploadInputSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The file; its name's extension must match its content.")
    workspace = serializers.IntegerField(
        required=False, help_text="Defaults to your only workspace (also accepted as `?workspace=`)."
    )


class StoredUploadSerializer(serializers.Serializer):
    path = serializers.CharField(
        help_text="`uploads/<file>`, relative to the workspace's files: put it in a file connector's `path` "
        "config (of this workspace) as it is."
    )
    size = serializers.IntegerField(help_text="Bytes stored.")
    sha256 = serializers.CharField()
    format = serializers.CharField(help_text="What the content was recognised as (csv, parquet, zip, …).")
    original_name = serializers.CharField(help_text="The client's file name, for display only.")


@extend_schema(tags=["connectors"])
class UploadViewSet(viewsets.GenericViewSet):
    """Files for the file sources, stored in the workspace's upload directory under a server-made name."""

    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser]
    serializer_class = UploadInputSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> list[Any]:  # type: ignore[override]
        return []  # nothing to list; only satisfies schema generation

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # Upload handlers must be in place before anything parses the body (authentication included).
        self.limit_handler = UploadLimitHandler(request, limit=_limit())
        request.upload_handlers.insert(0, self.limit_handler)
        return super().initialize_request(request, *args, **kwargs)

    def _workspace(self, request: Request, raw: Any) -> Workspace:
        return workspace_for_write(user=request.user, raw=raw, role=Role.EDITOR)

    @extend_schema(
        request={"multipart/form-data": UploadInputSerializer},
        parameters=[OpenApiParameter("workspace", int, required=False)],
        responses={201: StoredUploadSerializer},
    )
    def create(self, request: Request) -> Response:
        """Store one file (editor or admin). 400 names `file` when it is refused: too large, an extension off
        the allow-list, content that is not what the extension claims, an unsafe archive."""
        user = cast("User", request.user)
        # Checks that need no body come first, so a refused request is not read.
        query_workspace = request.query_params.get("workspace")
        if query_workspace not in (None, ""):
            self._workspace(request, query_workspace)
        elif not workspace_ids_for_user(user=user, min_role=Role.EDITOR):
            raise exceptions.PermissionDenied("Your role in this workspace does not allow this.")
        limit = _limit()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit + MULTIPART_OVERHEAD_BYTES:
            raise exceptions.ValidationError({"file": [_too_large(None, limit)]})

        data = request.data  # parses the body, through UploadLimitHandler
        if self.limit_handler.refused:
            raise exceptions.ValidationError({"file": [self.limit_handler.refused]})
        form_workspace = data.get("workspace") if hasattr(data, "get") else None
        workspace = self._workspace(request, query_workspace or form_workspace)
        upload = request.FILES.get("file")
        if upload is None:
            raise exceptions.ValidationError({"file": ["No file was sent (multipart field `file`)."]})
        try:
            stored = services.upload_create(
                workspace=workspace, user=user, file=upload, file_name=upload.name
            )
        finally:
            upload.close()
        return Response(
            StoredUploadSerializer(
                {
                    "path": stored.path,
                    "size": stored.size,
                    "sha256": stored.sha256,
                    "format": stored.format,
                    "original_name": stored.original_name,
                }
            ).data,
            status=status.HTTP_201_CREATED,
        )
