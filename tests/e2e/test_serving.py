"""Django serves the web app's static export: any page by its path (deep links, reloads, any `?id=`), the
app's 404 page for unknown paths, and never instead of the backend's own routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def build(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "out"
    (root / "pipelines").mkdir(parents=True)
    (root / "index.html").write_text("<p>dashboard</p>")
    (root / "pipelines.html").write_text("<p>pipelines</p>")
    (root / "pipelines" / "view.html").write_text("<p>pipeline detail</p>")
    (root / "404.html").write_text("<p>app not found</p>")
    (tmp_path / "secret.html").write_text("outside")
    settings.AGGREGATOR_FRONTEND_DIR = root
    return root


def test_a_deep_link_to_a_detail_page_serves_the_built_page_for_any_id(build: Path) -> None:
    response = Client().get("/pipelines/view?id=123456")
    assert response.status_code == 200
    assert response.content == b"<p>pipeline detail</p>"
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"


def test_the_root_and_a_list_page_are_served(build: Path) -> None:
    assert Client().get("/").content == b"<p>dashboard</p>"
    assert Client().get("/pipelines").content == b"<p>pipelines</p>"


def test_an_unknown_path_gets_the_apps_404_page_with_status_404(build: Path) -> None:
    response = Client().get("/no/such/page")
    assert response.status_code == 404
    assert response.content == b"<p>app not found</p>"


def test_a_path_cannot_leave_the_build_directory(build: Path) -> None:
    response = Client().get("/pipelines/../../secret")
    assert response.status_code == 404
    assert b"outside" not in response.content


@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing/", "/api/v1/pipelines/", "/ws/x", "/static/nothing.css", "/hooks/none"]
)
def test_backend_paths_are_never_answered_by_the_app(build: Path, path: str) -> None:
    response = Client().get(path)
    body = response.content if not response.streaming else b"".join(response.streaming_content)
    assert b"app not found" not in body
    assert b"dashboard" not in body


def test_the_admin_is_not_shadowed(build: Path) -> None:
    response = Client().get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_unsafe_methods_are_refused(build: Path) -> None:
    assert Client().post("/pipelines/view").status_code in (403, 405)


def test_without_a_build_the_root_shows_the_home_page_and_other_paths_404(
    settings: Any, tmp_path: Path
) -> None:
    settings.AGGREGATOR_FRONTEND_DIR = tmp_path / "missing"
    response = Client().get("/")
    assert response.status_code == 200
    assert b"Operator admin" in response.content
    assert Client().get("/pipelines/view?id=1").status_code == 404
