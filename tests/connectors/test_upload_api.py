"""`POST /api/v1/uploads/` for the personas: stored under a server name a file connector can read, refused
for viewers and foreign workspaces, and the size limit enforced before the body is read."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.test.client import FakePayload, RequestFactory, encode_multipart
from rest_framework.test import force_authenticate

from apps.connectors.api.uploads import UploadViewSet
from apps.connectors.services import connector_create, connector_preview

pytestmark = pytest.mark.django_db

URL = "/api/v1/uploads/"
PEOPLE = b"id,name\n1,alice\n2,bob\n"


@pytest.fixture
def spool_dir(settings: Any, tmp_path: Path) -> Path:
    """Where Django spools uploads over FILE_UPLOAD_MAX_MEMORY_SIZE (made small here): must end up empty."""
    directory = tmp_path / "spool"
    directory.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(directory)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    return directory


def _file(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _on_disk(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_editor_uploads_a_csv_that_a_file_connector_reads(
    personas: Any, client_for: Any, import_dir: Path, spool_dir: Path
) -> None:
    response = client_for(personas.editor).post(
        URL, {"file": _file(PEOPLE, "../../people.csv")}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    path = body["path"]
    assert re.fullmatch(r"uploads/[0-9a-f]{32}\.csv", path)
    assert body == {
        "path": path,
        "size": len(PEOPLE),
        "sha256": hashlib.sha256(PEOPLE).hexdigest(),
        "format": "csv",
        "original_name": "people.csv",
    }
    assert (import_dir / path).read_bytes() == PEOPLE
    assert _on_disk(import_dir) == [path]
    assert list(spool_dir.iterdir()) == []

    connector = connector_create(
        workspace=personas.workspace,
        user=personas.editor,
        name="uploaded",
        connector_type="csv_file",
        config={"path": path, "stream_name": "people"},
    )
    preview = connector_preview(connector=connector, stream="people")
    assert preview["rows"] == [{"id": 1, "name": "alice"}, {"id": 2, "name": "bob"}]


def test_an_explicit_workspace_in_the_form_or_the_query_is_used(
    personas: Any, client_for: Any, import_dir: Path
) -> None:
    client = client_for(personas.owner)
    form = client.post(
        URL, {"file": _file(PEOPLE, "a.csv"), "workspace": personas.workspace.id}, format="multipart"
    )
    query = client.post(
        f"{URL}?workspace={personas.workspace.id}", {"file": _file(PEOPLE, "b.csv")}, format="multipart"
    )
    assert (form.status_code, query.status_code) == (201, 201)
    assert sorted(_on_disk(import_dir)) == sorted([form.json()["path"], query.json()["path"]])


def test_viewer_cannot_upload(personas: Any, client_for: Any, import_dir: Path) -> None:
    response = client_for(personas.viewer).post(
        URL, {"file": _file(PEOPLE, "people.csv")}, format="multipart"
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "permission_denied", "message": "Your role in this workspace does not allow this."}
    }
    assert _on_disk(import_dir) == []


def test_outsider_cannot_upload_into_another_workspace(
    personas: Any, client_for: Any, import_dir: Path
) -> None:
    client = client_for(personas.outsider)
    expected = {
        "error": {
            "code": "validation_error",
            "message": "workspace: No such workspace.",
            "fields": {"workspace": ["No such workspace."]},
        }
    }
    in_form = client.post(
        URL, {"file": _file(PEOPLE, "people.csv"), "workspace": personas.workspace.id}, format="multipart"
    )
    in_query = client.post(
        f"{URL}?workspace={personas.workspace.id}", {"file": _file(PEOPLE, "people.csv")}, format="multipart"
    )
    assert (in_form.status_code, in_form.json()) == (400, expected)
    assert (in_query.status_code, in_query.json()) == (400, expected)
    assert _on_disk(import_dir) == []
    # Their own workspace works.
    own = client.post(URL, {"file": _file(PEOPLE, "people.csv")}, format="multipart")
    assert own.status_code == 201
    theirs = import_dir.parent / str(personas.other_workspace.id)
    assert _on_disk(theirs) == [own.json()["path"]]
    assert _on_disk(import_dir) == []


def test_anonymous_gets_401(client_for: Any, import_dir: Path) -> None:
    response = client_for(None).post(URL, {"file": _file(PEOPLE, "people.csv")}, format="multipart")
    assert response.status_code == 401
    assert _on_disk(import_dir) == []


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (
            PEOPLE,
            "people.exe",
            "Extension '.exe' is not allowed; allowed: csv, db, gz, json, jsonl, ndjson, parquet, sqlite, "
            "tsv, txt, xlsx, zip.",
        ),
        (
            b"\x00\x01binary",
            "people.csv",
            "'people.csv' claims '.csv' but it contains NUL bytes (binary data).",
        ),
        (b"", "people.csv", "'people.csv' is empty."),
    ],
)
def test_a_refused_upload_is_400_on_file_and_leaves_nothing(
    personas: Any, client_for: Any, import_dir: Path, data: bytes, name: str, message: str
) -> None:
    response = client_for(personas.editor).post(URL, {"file": _file(data, name)}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "validation_error", "message": f"file: {message}", "fields": {"file": [message]}}
    }
    assert _on_disk(import_dir) == []


def test_a_request_without_a_file_names_the_field(personas: Any, client_for: Any, import_dir: Path) -> None:
    response = client_for(personas.editor).post(URL, {"workspace": personas.workspace.id}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"file": ["No file was sent (multipart field `file`)."]}


class CountingPayload(FakePayload):
    """The request body, counting how much of it the server read."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.bytes_read = 0

    def read(self, size: int = -1, /) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def _raw_upload(user: Any, data: bytes, name: str) -> tuple[Any, CountingPayload]:
    boundary = "BoUnDaRy"
    body = encode_multipart(boundary, {"file": _file(data, name)})
    payload = CountingPayload(body)
    environ = RequestFactory()._base_environ(
        PATH_INFO=URL,
        REQUEST_METHOD="POST",
        CONTENT_TYPE=f"multipart/form-data; boundary={boundary}",
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": payload},
    )
    request = WSGIRequest(environ)
    force_authenticate(request, user=user)
    response = UploadViewSet.as_view({"post": "create"})(request)
    response.render()
    return response, payload


def test_an_oversize_body_is_refused_before_it_is_read(
    personas: Any, import_dir: Path, spool_dir: Path, settings: Any
) -> None:
    settings.AGGREGATOR_UPLOAD_MAX_BYTES = 100_000
    data = b"id,name\n" + b"1,abcdefgh\n" * 200_000  # 2.2 MB
    response, payload = _raw_upload(personas.editor, data, "big.csv")
    message = "The upload is larger than the upload limit of 100000 bytes."
    assert response.status_code == 400
    assert response.data["error"]["fields"] == {"file": [message]}
    assert payload.bytes_read == 0
    assert _on_disk(import_dir) == [] and list(spool_dir.iterdir()) == []


def test_a_file_over_the_limit_is_stopped_while_streaming_and_nothing_is_left(
    personas: Any, import_dir: Path, spool_dir: Path, settings: Any, monkeypatch: Any
) -> None:
    # The body is within the multipart allowance of Content-Length, so the streaming count must stop it
    # before the file reaches upload_store.
    settings.AGGREGATOR_UPLOAD_MAX_BYTES = 100_000
    monkeypatch.setattr(
        "apps.connectors.services.upload_store", lambda **kwargs: pytest.fail("upload_store was reached")
    )
    data = b"id,name\n" + b"1,abcdefgh\n" * 10_000  # 110,008 bytes
    response, _ = _raw_upload(personas.editor, data, "big.csv")
    message = "'big.csv' is larger than the upload limit of 100000 bytes."
    assert response.status_code == 400
    assert response.data["error"]["fields"] == {"file": [message]}
    assert _on_disk(import_dir) == [] and list(spool_dir.iterdir()) == []


def test_a_file_just_at_the_limit_is_stored(personas: Any, import_dir: Path, settings: Any) -> None:
    data = b"id,name\n" + b"1,abcdefgh\n" * 9_000
    settings.AGGREGATOR_UPLOAD_MAX_BYTES = len(data)
    response, _ = _raw_upload(personas.editor, data, "edge.csv")
    assert response.status_code == 201, response.data
    assert response.data["size"] == len(data)
    assert (import_dir / response.data["path"]).read_bytes() == data


def test_a_viewers_upload_is_refused_unread(personas: Any, import_dir: Path, spool_dir: Path) -> None:
    response, payload = _raw_upload(personas.viewer, PEOPLE * 1000, "people.csv")
    assert response.status_code == 403
    assert payload.bytes_read == 0
    assert _on_disk(import_dir) == [] and list(spool_dir.iterdir()) == []
