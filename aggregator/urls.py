from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from aggregator.frontend import app_catch_all, app_page
from aggregator.health import healthz, readyz
from apps.monitoring.prometheus import metrics_view as prometheus_metrics_view


def _docs(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The schema tells an attacker every route: unless AGGREGATOR_PUBLIC_API_DOCS, it needs a login."""
    protected = login_required(view)

    def docs_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        chosen = view if settings.AGGREGATOR_PUBLIC_API_DOCS else protected
        return chosen(request, *args, **kwargs)

    return docs_view


api_v1 = [
    path("", include("apps.users.api.urls")),
    path("", include("apps.pipelines.api.urls")),
    path("", include("apps.connectors.api.urls")),
    path("", include("apps.transformations.api.urls")),
    path("", include("apps.monitoring.api.urls")),
    path("", include("apps.webhooks.api.urls")),
    path("", include("apps.schemas.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", prometheus_metrics_view, name="prometheus-metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # Incoming webhooks: signed with their own secrets, outside the API's session/JWT/API-key auth.
    path("hooks/", include("apps.webhooks.api.hooks_urls")),
    path("api/schema/", _docs(SpectacularAPIView.as_view()), name="schema"),
    path("api/docs/", _docs(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    # The web app (aggregator/frontend.py) answers `/`; without a build it shows the home.html page below.
    path("", app_page, name="app"),
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
]

# A path under /api/ that no route matches answers the API's error body (aggregator/api/exceptions.py).
handler404 = "aggregator.api.exceptions.not_found"

# Last: every other path is a page of the web app (deep links, reloads), never /api/, /admin/, /ws/, …
urlpatterns += [app_catch_all()]
