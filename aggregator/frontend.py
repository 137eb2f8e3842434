"""Serves the web app: the Next.js static export in `frontend/out` (built by `make frontend`).

WhiteNoise serves the export's assets (`/_next/static/…`, icons) from WHITENOISE_ROOT. This view answers
the app's *pages*: `/pipelines/view?id=3` is the file `pipelines/view.html` whatever the id, so a deep link
or a reload of any detail page works. A path the app does not have gets the app's own 404 page with status
404; HTML is never cached (a new build must reach the browser at once), hashed assets are cached forever.

Paths of the backend (`/api/`, `/admin/`, `/ws/`, `/static/`, health, metrics, hooks) never reach this view:
the URL pattern excludes them, so the app can never shadow them.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, re_path
from django.views.decorators.http import require_safe

# Prefixes the catch-all must leave to the backend; kept here so the URL pattern and the tests agree.
BACKEND_PREFIXES = ("api/", "admin/", "ws/", "static/", "_next/", "healthz", "readyz", "metrics", "hooks/")
CATCH_ALL = r"^(?!" + "|".join(p.replace(".", r"\.") for p in BACKEND_PREFIXES) + r")(?P<path>.*)$"


def _build_dir() -> Path:
    return Path(settings.AGGREGATOR_FRONTEND_DIR)


def _page_file(root: Path, path: str) -> Path | None:
    path = path.strip("/")
    candidates = [root / "index.html"] if not path else [root / f"{path}.html", root / path / "index.html"]
    resolved_root = root.resolve()
    for candidate in candidates:
        resolved = candidate.resolve()
        # `..` in the path must not leave the build directory.
        if resolved.is_relative_to(resolved_root) and resolved.is_file():
            return resolved
    return None


def _html(file: Path, status: int = 200) -> HttpResponse:
    # Pages are small: read whole rather than streamed (a streamed sync file warns under ASGI).
    response = HttpResponse(file.read_bytes(), content_type="text/html; charset=utf-8", status=status)
    response["Cache-Control"] = "no-cache"
    return response


@require_safe
def app_page(request: HttpRequest, path: str = "") -> HttpResponse:
    root = _build_dir()
    if not (root / "index.html").is_file():
        # Not built (a backend-only checkout): the small page that links to the admin and the API docs.
        if path.strip("/"):
            raise Http404("The web app is not built.")
        return render(request, "home.html")
    page = _page_file(root, path)
    if page is not None:
        return _html(page)
    not_found = root / "404.html"
    if not_found.is_file():
        return _html(not_found, status=404)
    raise Http404(path)


def app_catch_all() -> URLPattern:
    """The URL pattern that sends every other path to the app; it must be the last one in urlpatterns."""
    return re_path(CATCH_ALL, app_page, name="app-page")
